from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.execution import processes
from pipeline.execution.processes import AUTOGROUP_SELF, descendants, pss_bytes


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


needs_autogroups = pytest.mark.skipif(not processes.autogroups_on(), reason="this kernel does not group CPU time by session")

#: A child that reports where the scheduler puts it, after background_cpu_group at a niceness
#: raised by argv[1].
_REPORT = """
import json, os, sys
from pipeline.execution.processes import background_cpu_group
os.nice(int(sys.argv[1]))
done = background_cpu_group()
print(json.dumps({"done": done, "niceness": os.getpriority(os.PRIO_PROCESS, 0), "own_session": os.getsid(0) == os.getpid(), "leader": os.getpgid(0) == os.getpid(),
                  "group": open("/proc/self/autogroup").read().strip()}))
"""


def _report(niceness: int) -> dict[str, object]:
    # A process-group leader, as Ray starts its workers: such a process cannot start a session as it is.
    out = subprocess.run([sys.executable, "-c", _REPORT, str(niceness)], capture_output=True, text=True, check=True, process_group=0)
    return json.loads(out.stdout)


@needs_autogroups
def test_a_niced_worker_gets_a_cpu_group_of_its_own_at_its_niceness() -> None:
    with open(AUTOGROUP_SELF) as f:
        ours = f.read().strip()
    report = _report(9)
    assert report["own_session"] and report["leader"], report
    assert report["group"] != ours and report["group"].endswith(f"nice {report['niceness']}"), report


@needs_autogroups
@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) != 0, reason="these tests run niced")
def test_a_worker_at_niceness_zero_is_left_in_its_group() -> None:
    with open(AUTOGROUP_SELF) as f:
        ours = f.read().strip()
    report = _report(0)
    assert not report["own_session"] and report["group"] == ours, report


def test_nothing_changes_where_the_kernel_does_not_group_by_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    switch = tmp_path / "sched_autogroup_enabled"
    switch.write_text("0\n")
    monkeypatch.setattr(processes, "AUTOGROUP_SWITCH", str(switch))
    session = os.getsid(0)
    assert processes.background_cpu_group() == "autogroups off"
    assert os.getsid(0) == session
