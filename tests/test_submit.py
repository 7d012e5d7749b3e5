"""Submitting to a cluster, without one: addresses, the job's command and runtime environment.

The real round trip (a two-node cluster, a job, logs, stop, a node killed mid-run) is in
test_cluster.py.
"""

from __future__ import annotations

import io
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import jobs
import pipeline
from pipeline.cli import EXIT_INFRASTRUCTURE, EXIT_USAGE, main
from pipeline.config import config_from_dict, load_config
from pipeline.errors import ConfigError
from pipeline.execution.submit import JOB_CONFIG_FILE, index_entrypoint, job_config_yaml, resolve_address, runtime_env


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_address_comes_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265/")
    assert resolve_address(None) == "http://127.0.0.1:8265"
    assert resolve_address("https://head.example:443") == "https://head.example:443"
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(ConfigError, match="--address http://HEAD:8265 or set RAY_ADDRESS"):
        resolve_address(None)
    with pytest.raises(ConfigError, match="must be the dashboard URL"):
        resolve_address("127.0.0.2:6379")  # a GCS address, not the job server


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "/data/videos", "--index", "/data/index"],
        ["jobs", "list"],
        ["jobs", "status", "raysubmit_x"],
        ["jobs", "logs", "raysubmit_x"],
        ["jobs", "stop", "raysubmit_x"],
    ],
)
def test_an_unreachable_address_is_an_infrastructure_failure_naming_where_it_came_from(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    assert main([*argv, "--address", address]) == EXIT_INFRASTRUCTURE
    err = capsys.readouterr().err
    assert f"cannot reach the Ray job server at {address}" in err
    assert "--address or RAY_ADDRESS" in err


def test_a_bad_setting_fails_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    code = main(["submit", "s3://b/v", "--index", "s3://b/i", "--address", address, "--set", "shots.treshold=0.4"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "'shots.treshold'" in err and "cannot reach" not in err


def test_entrypoint_runs_the_index_job_with_the_shipped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command = shlex.split(index_entrypoint("videos dir", "s3://bucket/index", full=True))
    assert command == [
        "python", "-m", "jobs.index_corpus", str(tmp_path / "videos dir"),
        "--index", "s3://bucket/index", "--config", JOB_CONFIG_FILE, "--full",
    ]
    assert shlex.split(index_entrypoint(None, "s3://b/i")) == [
        "python", "-m", "jobs.index_corpus", "--index", "s3://b/i", "--config", JOB_CONFIG_FILE,
    ]


def test_runtime_env_ships_the_packages_and_the_validated_config(tmp_path: Path) -> None:
    config_file = tmp_path / "vindex.yaml"
    config_file.write_text("shots:\n  threshold: 0.4\nsource:\n  extensions: ['.mp4']\n")
    config = load_config(config_file, {"keyframes.max_per_shot": 2})
    with runtime_env(config) as env:
        folder = Path(env["working_dir"])
        assert sorted(p.name for p in folder.iterdir()) == [JOB_CONFIG_FILE]
        shipped = load_config(folder / JOB_CONFIG_FILE)
    assert not folder.exists()  # removed once submitted
    assert shipped == config
    assert (shipped.shots.threshold, shipped.keyframes.max_per_shot, shipped.source.extensions) == (0.4, 2, (".mp4",))
    assert env["py_modules"] == [str(Path(pipeline.__file__).parent), str(Path(jobs.__file__).parent)]
    assert "__pycache__" in env["excludes"]


def test_job_config_yaml_round_trips_every_setting() -> None:
    config = config_from_dict({"compute": {"model_gpus": 0.5, "decode_actors": 3}, "storage": {"region": "eu-west-1"}})
    assert config_from_dict(yaml.safe_load(job_config_yaml(config))) == config


class _FakeJobServer:
    """Stands in for JobSubmissionClient: a log stream that drops once, then a failed job."""

    def __init__(self) -> None:
        self.streams = [["line 1\n", "line 2\n"], ["line 1\n", "line 2\n", "line 3\n"]]
        self.statuses = ["RUNNING", "FAILED"]
        self.log = "line 1\nline 2\nline 3\n"

    async def tail_job_logs(self, job_id: str):  # type: ignore[no-untyped-def]
        for chunk in self.streams.pop(0):
            yield chunk

    def get_job_status(self, job_id: str) -> Any:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]  # the last one stays
        return SimpleNamespace(value=status)

    def get_job_logs(self, job_id: str) -> str:
        return self.log

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(
            submission_id=job_id, job_id=None, status=SimpleNamespace(value="FAILED"), start_time=None,
            entrypoint="python -m jobs.index_corpus", message="Job entrypoint command failed with exit code 1",
            driver_exit_code=1,
        )  # fmt: skip

    def get_address(self) -> str:
        return "http://127.0.0.1:8265"


def test_follow_reopens_a_dropped_stream_without_repeating_and_reports_the_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline.execution.submit as submit

    monkeypatch.setattr(submit, "POLL_INTERVAL_S", 0.0)
    server = _FakeJobServer()
    out = io.StringIO()
    assert submit.follow_job(server, "raysubmit_1", out) == "FAILED"  # type: ignore[arg-type]
    assert out.getvalue() == "line 1\nline 2\nline 3\n"

    from pipeline.cli import job_outcome

    assert job_outcome(submit.job_info(server, "raysubmit_1")) == 1  # type: ignore[arg-type]
    assert "job raysubmit_1 FAILED: Job entrypoint command failed with exit code 1" in capsys.readouterr().err


class _LingeringStreamServer(_FakeJobServer):
    """A job that has ended while its log stream stays open, as Ray's does for a second or two
    after a job's end; this one for longer than any poll, and then it complains."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses = ["RUNNING", "RUNNING", "SUCCEEDED"]
        self.log = "line 1\nline 2\nsummary\n"
        self.read_to_its_end = False

    async def tail_job_logs(self, job_id: str):  # type: ignore[no-untyped-def]
        import asyncio

        yield "line 1\n"
        await asyncio.sleep(0.05)
        yield "line 2\n"
        await asyncio.sleep(30)  # the follower must not wait for this
        self.read_to_its_end = True
        yield "summary\n"


def test_follow_ends_when_the_job_does_not_when_its_log_stream_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.execution.submit as submit

    monkeypatch.setattr(submit, "POLL_INTERVAL_S", 0.05)
    server = _LingeringStreamServer()
    out = io.StringIO()
    assert submit.follow_job(server, "raysubmit_1", out) == "SUCCEEDED"  # type: ignore[arg-type]
    assert not server.read_to_its_end
    assert out.getvalue() == "line 1\nline 2\nsummary\n"  # the rest from the whole log, nothing twice


def test_a_finished_command_ends_with_its_code_and_its_output_flushed_without_the_interpreter_s_teardown() -> None:
    script = (
        "import atexit, logging, sys\n"
        "from pipeline.execution.ray_runtime import end_process\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "atexit.register(lambda: print('teardown ran', flush=True))\n"
        "print('summary', end='')\n"  # buffered: stdout is a pipe here
        "logging.getLogger('job').warning('last log line')\n"
        "end_process(3)\n"
        "print('after the end', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout == "summary"  # flushed; neither the teardown nor what follows ran
    assert done.stderr.strip().splitlines()[-1] == "last log line"


def test_the_vindex_command_ends_through_end_process() -> None:
    scripts = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vindex"] == "pipeline.cli:console"
    script = (
        "import atexit, sys\n"
        "from pipeline.cli import console\n"
        "atexit.register(lambda: print('teardown ran', flush=True))\n"
        f"sys.argv = ['vindex', 'jobs', 'list', '--address', 'http://127.0.0.1:{_closed_port()}']\n"
        "console()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_INFRASTRUCTURE
    assert "cannot reach the Ray job server" in done.stderr
    assert "teardown ran" not in done.stdout
