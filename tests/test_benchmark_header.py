"""Every benchmark names the machine its figures come from: the CPU, its instruction-set
extensions, torch, its threads and kernel capability, and any cap put on the instruction set."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmarks import measure

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: The scripts that print figures; each prints ``machine_header()`` before them.
WITH_HEADER = (
    "accuracy.py",
    "ann.py",
    "build_scenes_set.py",
    "calibration.py",
    "clips.py",
    "dedup.py",
    "dedup_quality.py",
    "driver.py",
    "gpu_check.py",
    "listing.py",
    "memory.py",
    "networks.py",
    "real_shots.py",
    "scale.py",
    "commit_cost.py",
    "scaling.py",
    "scene_methods.py",
    "scenes.py",
    "segment_open.py",
    "signals.py",
    "small_clips.py",
    "small_corpus.py",
    "stages.py",
    "startup.py",
    "throughput.py",
)

#: The scripts that do not print the header, and why.
EXEMPT = {
    "__init__.py": "the package's docstring",
    "_checkout.py": "puts the checkout on sys.path for a script run as a file; prints nothing",
    "measure.py": "defines the header; a module of helpers with no main",
    "cpu.py": "a module of helpers (CPU seconds per process from /proc) with no main",
    "scene_metrics.py": "a module of scoring functions; prints nothing",
    "reference_transnetv2.py": "prints only 'frames seconds' for small_clips.py to parse, which prints the header",
    "dedup_corpus.py": "builds the corpus dedup_quality.py scores, which prints the header; measures nothing",
    "fit_embedding_centre.py": "writes the scene rule's embedding centre from stored embeddings; measures no speed",
}

CPUINFO = textwrap.dedent(
    """\
    processor\t: 0
    vendor_id\t: GenuineIntel
    model name\t: Example CPU 9000
    flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8
    bugs\t\t: spectre_v1

    processor\t: 1
    model name\t: Example CPU 9000
    flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8
    """
)


def proc_cpuinfo() -> tuple[str, set[str]]:
    """The first CPU's model name and flags, read here independently of the code under test."""
    text = Path("/proc/cpuinfo").read_text()
    model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
    return model, set(flags)


def test_cpu_model_and_flags_read_the_first_cpu(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    assert measure.cpu_model_and_flags(cpuinfo) == (
        "Example CPU 9000",
        {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"},
    )


def test_cpu_model_falls_back_to_platform_without_cpuinfo(tmp_path: Path) -> None:
    assert measure.cpu_model_and_flags(tmp_path / "absent") == (platform.processor() or "unknown CPU", set())


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_header_names_this_cpu_torch_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    model, flags = proc_cpuinfo()
    present = [flag for flag in measure.ISA_FLAGS if flag in flags]
    cpu_line, torch_line = measure.machine_header().splitlines()

    assert cpu_line.startswith(f"CPU: {model} ({os.cpu_count()} CPUs")
    isa = cpu_line.split("; ISA: ")[1]
    assert isa == (" ".join(present) or f"none of {' '.join(measure.ISA_FLAGS)}")
    assert torch_line == (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"capability {torch.backends.cpu.get_cpu_capability()}; oneDNN ISA cap: none, ATEN_CPU_CAPABILITY=unset"
    )


def test_header_shows_the_instruction_set_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert measure.machine_header().endswith("; oneDNN ISA cap: AVX2, ATEN_CPU_CAPABILITY=avx2")


def test_header_asks_a_fresh_interpreter_where_torch_is_not_loaded() -> None:
    """The benchmark's own process stays without torch, and the answer carries its environment:
    the thread count and the capability cap reach the interpreter that reports them."""
    code = "import sys; from benchmarks import measure; print(measure.machine_header()); print('torch' in sys.modules)"
    env = os.environ | {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True, cwd=BENCHMARKS.parent
    )
    _, torch_line, loaded = done.stdout.splitlines()
    assert torch_line == (
        f"torch {torch.__version__}, 1 threads, capability DEFAULT; oneDNN ISA cap: none, ATEN_CPU_CAPABILITY=default"
    )
    assert loaded == "False"


def test_every_benchmark_is_listed() -> None:
    """A new script is either given the header or exempted here with its reason."""
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts == set(WITH_HEADER) | set(EXEMPT)
    assert not set(WITH_HEADER) & set(EXEMPT)


@pytest.mark.parametrize("script", WITH_HEADER)
def test_benchmark_prints_the_machine_header(script: str) -> None:
    source = (BENCHMARKS / script).read_text()
    assert re.search(r"from benchmarks\.measure import (\([^)]*|[^\n]*)\bmachine_header\b", source)
    assert "print(machine_header()" in source or "in machine_header().splitlines()" in source
