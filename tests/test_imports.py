"""Modules that only read tables, and the command line's help, import no torch, Ray or decord.

Each check runs in a fresh interpreter, so what the test session already imported does not
count, and fails on what is imported rather than on how long it takes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Heavy packages that reading an index must not load: each costs seconds of start-up.
HEAVY = ("torch", "ray", "decord", "av")

LIGHT_MODULES = [
    "pipeline",
    "pipeline.errors",
    "pipeline.config",
    "pipeline.cli",
    "pipeline.models.spec",
    "pipeline.models.machine",
    "pipeline.models.weights",
    "pipeline.index.store",
    "pipeline.index.reader",
    "pipeline.index.query",
    "pipeline.index.status",
    "pipeline.index.similarity",
    "pipeline.index.report",
    "pipeline.index.maintenance",
    "pipeline.index.dedup",
]

#: Makes importing a blocked package fail loudly, so the traceback names the importer.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"heavy module {name} imported")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_python(code: str, blocked: tuple[str, ...] = HEAVY) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which importing any of ``blocked`` fails."""
    program = f"BLOCKED = {blocked!r}\n" + BLOCKER + code
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_module_imports_no_heavy_package(module: str) -> None:
    done = run_python(f"import {module}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


#: Not even pyarrow for the help: with it (and pandas, which pyarrow.dataset imports) `vindex
#: --help` took 1.2 s instead of 0.4 s (measured on 2 shared CPUs).
HELP_BLOCKED = (*HEAVY, "pyarrow", "pandas")


@pytest.mark.parametrize("command", [["--help"], ["query", "--help"], ["similar", "--help"], ["compact", "--help"]])
def test_command_line_help_imports_no_heavy_package(command: list[str]) -> None:
    code = f"import runpy\nsys.argv = ['vindex', *{command!r}]\nrunpy.run_module('pipeline.cli', run_name='__main__')"
    done = run_python(code, blocked=HELP_BLOCKED)
    assert done.returncode == 0, done.stderr
    assert "usage: vindex" in done.stdout


def test_the_blocker_catches_a_heavy_import() -> None:
    # The check above would pass vacuously if the blocker blocked nothing.
    done = run_python("import pipeline.models.inference")
    assert done.returncode != 0
    assert "heavy module torch imported" in done.stderr
