"""benchmarks/ is a package: a script runs as ``python -m benchmarks.NAME`` and as
``python benchmarks/NAME.py`` (the docs quote the latter), and the helpers the scripts share
live once, in benchmarks/measure.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.measure import Finished, PrecisionRecall, run_timed, vindex_run_args

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PREAMBLE = "if not __package__:"
#: Helpers that once lived in several scripts, defined in benchmarks/measure.py only: a video
#: decoded whole, and the precision, recall and F1 properties of counted events.
SHARED = ("decode_whole", "precision", "recall", "f1")


def _scripts() -> list[Path]:
    return sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in ("__init__.py", "_checkout.py"))


def test_only_the_checkout_module_touches_sys_path() -> None:
    offenders = [p.name for p in _scripts() if "sys.path" in p.read_text().replace("``sys.path``", "")]
    assert offenders == []


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.name)
def test_a_script_that_imports_the_checkout_runs_as_a_file_too(script: Path) -> None:
    """Its first statement after ``__future__`` puts the checkout on sys.path when it runs as a
    file, and it imports other benchmarks as ``benchmarks.X``, never by their bare names."""
    tree = ast.parse(script.read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    body = [node for node in body if not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    own = {p.stem for p in BENCHMARKS.glob("*.py")} - {"_checkout", "__init__"}
    assert imported.isdisjoint(own), f"bare imports of benchmarks: {sorted(imported & own)}"
    if imported & {"pipeline", "testkit", "benchmarks"}:
        assert ast.unparse(body[0]).startswith(PREAMBLE) and "import _checkout" in ast.unparse(body[0])


def test_shared_helpers_are_defined_once() -> None:
    defined = {
        (script.name, node.name)
        for script in _scripts()
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in SHARED
        and (node.name == "decode_whole" or any(ast.unparse(d) == "property" for d in node.decorator_list))
    }
    assert {script for script, _ in defined} == {"measure.py"}, sorted(defined)
    # `vindex` is started in a child process, and timed, in one place.
    starting = [p.name for p in _scripts() if '"-m", "pipeline.cli"' in p.read_text()]
    assert starting == ["measure.py"]


@pytest.mark.parametrize("how", ["file", "module"])
def test_a_script_runs_both_ways_with_the_checkouts_code(how: str) -> None:
    argv = [str(BENCHMARKS / "scene_methods.py")] if how == "file" else ["-m", "benchmarks.scene_methods"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")


def test_a_command_runs_timed_on_this_checkout_and_an_embedded_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://elsewhere:10001")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    code = "import os, pipeline; print(os.path.dirname(os.path.dirname(pipeline.__file__)), os.environ.get('RAY_ADDRESS'), os.environ['RAY_AUTH_MODE'])"
    run = run_timed([sys.executable, "-c", code], cwd=ROOT.parent)
    assert run.check().stdout.split() == [str(ROOT), "None", "disabled"]
    assert run.seconds > 0 and run.argv[0] == sys.executable
    with pytest.raises(SystemExit, match=r"failed \(3\)"):
        run_timed([sys.executable, "-c", "raise SystemExit(3)"]).check()
    assert run_timed([sys.executable, "-c", "raise SystemExit(1)"]).check(ok=(0, 1)).returncode == 1


def test_the_run_summary_is_read_only_from_a_run_that_indexed_everything() -> None:
    def finished(stdout: str) -> Finished:
        return Finished(["vindex"], 0.0, 1.0, 0, stdout, "")

    line = "run r: 3 videos ok, 0 failed, 0 unchanged\n  shots 9   frames 15,000 at 1,212.5 frames/s\n"
    assert finished(line).run_summary() == (15000, 1212.5)
    with pytest.raises(SystemExit, match="did not index every video"):
        finished(line.replace("0 failed", "1 failed")).run_summary()
    assert vindex_run_args("in", "idx", ["a.b=1"], "c.yaml") == [
        "run", "in", "--index", "idx", "--quiet", "--config", "c.yaml", "--set", "a.b=1",
    ]  # fmt: skip


def test_precision_recall_and_f1_of_counted_events() -> None:
    class Counts(PrecisionRecall):
        def __init__(self, true_positives: int, predicted: int, actual: int) -> None:
            self.true_positives, self.predicted, self.actual = true_positives, predicted, actual

    counts = Counts(3, 4, 6)
    assert (counts.precision, counts.recall) == (0.75, 0.5)
    assert counts.f1 == pytest.approx(2 * 3 / (4 + 6))
    assert (Counts(0, 0, 0).precision, Counts(0, 0, 0).f1) == (1.0, 1.0)
    assert (Counts(0, 2, 0).precision, Counts(0, 2, 0).recall, Counts(0, 2, 0).f1) == (0.0, 1.0, 0.0)
