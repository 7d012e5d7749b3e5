from __future__ import annotations

import os
import subprocess
import sys

from pipeline.execution.processes import descendants, pss_bytes


def test_process_tree_helpers_see_a_child_and_its_memory() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True
    )
    try:
        # Measured only once the interpreter is up: right after the fork it holds a few hundred KB.
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert child.pid in descendants(os.getpid())
        assert pss_bytes(child.pid) > 1_000_000  # a Python interpreter holds megabytes
    finally:
        child.kill()
        child.wait()
    assert child.pid not in descendants(os.getpid())
