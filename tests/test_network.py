"""The embedded Ray of `vindex run` listens on loopback only: every socket of its process tree.

The sockets are read from /proc (``/proc/PID/fd`` for the process's socket inodes,
``/proc/PID/net/{tcp,tcp6,udp,udp6}`` for their local addresses), so the check does not
depend on reachability: inside a loopback-only network namespace a socket bound to 0.0.0.0
cannot be told apart from one bound to 127.0.0.1 by connecting, but its local address still
says 0.0.0.0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.execution import listening
from pipeline.execution.listening import Listener
from pipeline.execution.processes import descendants
from testkit import synthetic

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")

POLL_S = 0.3

#: Starts Ray as `vindex run` does (pipeline.execution.runner calls init_ray with the run's config),
#: runs an actor and a task on it, then waits for stdin to close.
EMBEDDED = """
import sys
import ray
from pipeline.config import Config
from pipeline.execution.ray_runtime import init_ray

init_ray(Config())

@ray.remote(num_cpus=0.25)
class Probe:
    def node(self):
        return ray.util.get_node_ip_address()

@ray.remote(num_cpus=0.25)
def task():
    return 1

probe = Probe.remote()
print(ray.get(probe.node.remote()), ray.get(task.remote()), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@dataclass(frozen=True)
class Seen:
    """A listening socket and the name of the process holding it, read while it was alive."""

    process: str
    socket: Listener

    @property
    def on_loopback(self) -> bool:
        return self.socket.on_loopback


def listeners(root: int) -> set[Seen]:
    """Every listening TCP and unconnected UDP socket of ``root`` and its descendants."""
    found = listening.listeners([root, *descendants(root)])
    return {Seen(listening.process_name(s.pid), s) for s in found}


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process tree, SIGKILL what is left after 10 s."""
    victims = [process.pid, *descendants(process.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=10)
            if sig == signal.SIGTERM:
                time.sleep(1)  # let Ray's own processes go after their parent
        except subprocess.TimeoutExpired:
            pass
    process.wait()


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


def _report(seen: set[Seen]) -> str:
    return "\n".join(
        f"  {s.process}: {s.socket.protocol} {s.socket.address}:{s.socket.port}" for s in sorted(seen, key=repr)
    )


def test_embedded_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """Ray started as `vindex run` starts it, with an actor and a task: nothing beyond loopback."""
    with open(tmp_path / "stderr.log", "wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", EMBEDDED], cwd=Path(__file__).parent.parent, env=_environment(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().decode()
        assert ready.split()[1:] == ["1"], (tmp_path / "stderr.log").read_text()[-3000:]
        time.sleep(2)  # the agents open their ports after the node has started
        seen = listeners(process.pid)
    finally:
        _stop(process)
    names = {s.process for s in seen}
    # Every kind of Ray server was there to be checked.
    assert {"gcs_server", "raylet", "ray::Probe", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, _report(seen)
    assert [s for s in seen if not s.on_loopback] == [], "listening beyond loopback:\n" + _report(seen)


@pytest.mark.slow
def test_a_vindex_run_listens_on_loopback_only(tmp_path: Path) -> None:
    """A real `vindex run`, watched from start to end: no socket of it ever leaves loopback."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    spec = synthetic.simple_spec([40, 40], "cut", contents=[0, 1], width=160, height=96, seed=0)
    synthetic.write_clip(corpus / "clip.mp4", spec)
    argv = [
        sys.executable, "-m", "pipeline.cli", "run", str(corpus), "--index", str(tmp_path / "idx"), "--quiet",
        "--set", "compute.model_threads=1", "--set", "decode.threads=1",
    ]  # fmt: skip
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, cwd=Path(__file__).parent.parent, env=_environment(), stdout=out, stderr=subprocess.STDOUT
        )
    seen: set[Seen] = set()
    deadline = time.monotonic() + 600
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "vindex run did not end within 600 s"
            seen |= listeners(process.pid)
            time.sleep(POLL_S)
    finally:
        if process.poll() is None:
            _stop(process)
    assert process.returncode == 0, log.read_text()[-3000:]
    names = {s.process for s in seen}
    assert {"gcs_server", "raylet"} <= names, _report(seen)
    assert any(n.startswith("ray::MapWorker") for n in names), _report(seen)  # a pipeline actor
    assert [s for s in seen if not s.on_loopback] == [], "listening beyond loopback:\n" + _report(seen)


#: `vindex run` (pipeline.cli.main, argv[2:]) with the embedded Ray's loopback made to fail in the
#: way argv[1] names; prints whether Ray is still up and what is left below this process.
REFUSED = """
import contextlib, os, sys
import ray
from pipeline.cli import main
from pipeline.execution import ray_private, ray_runtime
from pipeline.execution import listening
from pipeline.execution.listening import Listener
from pipeline.execution.processes import descendants

if sys.argv[1] == "switch":
    @contextlib.contextmanager
    def fails_open():
        # The switch does nothing, and Ray replaces the node's 127.0.0.1 as its cluster mode does
        # with the host's network address on Linux (127.0.0.2 here: no network needed).
        from ray._private import services
        real = services.get_node_ip_address
        services.get_node_ip_address = lambda address=None: "127.0.0.2"
        try:
            yield
        finally:
            services.get_node_ip_address = real
    ray_private.loopback_only = fails_open
else:
    # vindex's own node address one that Ray serves on every interface (any but exactly
    # 127.0.0.1): only the check of the sockets stands in the way.
    ray_runtime.LOCAL_NODE_IP = "127.0.0.2"
status = main(sys.argv[2:])
print("ray up:", ray.is_initialized(), "left:", descendants(os.getpid()), flush=True)
sys.exit(status)
"""


def _refused_run(tmp_path: Path, failure: str) -> subprocess.CompletedProcess[str]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    synthetic.write_clip(corpus / "clip.mp4", synthetic.simple_spec([20], width=64, height=48, seed=0))
    argv = ["run", str(corpus), "--index", str(tmp_path / "idx"), "--quiet"]
    return subprocess.run(
        [sys.executable, "-c", REFUSED, failure, *argv], cwd=Path(__file__).parent.parent, env=_environment(),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_loopback_switch_that_fails_open_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    result = _refused_run(tmp_path, "switch")
    assert result.returncode == 3, result.stderr[-3000:]
    assert (
        "vindex: infrastructure error: the embedded Ray's node address is 127.0.0.2, not 127.0.0.1: its servers "
        "would listen on every network interface, so Ray was stopped\n"
    ) in result.stderr
    assert result.stdout.splitlines()[-1] == "ray up: False left: []"


def test_a_ray_listening_beyond_loopback_is_stopped_with_exit_3(tmp_path: Path) -> None:
    result = _refused_run(tmp_path, "address")
    assert result.returncode == 3, result.stderr[-3000:]
    message = next(line for line in result.stderr.splitlines() if line.startswith("vindex: "))
    refusal = "vindex: infrastructure error: the embedded Ray listened beyond loopback, so Ray was stopped: "
    assert message.startswith(refusal)
    exposed = message[len(refusal) :].split("; ")
    # The driver's core worker, the GCS and the raylet, each named with what it listened on: every interface.
    assert any(e.startswith("this process (pid ") for e in exposed), message
    for server in ("gcs_server", "raylet"):
        assert any(e.startswith(f"{server} (pid ") for e in exposed), message
    for entry in exposed:
        assert entry.rsplit(" ", 1)[1].rsplit(":", 1)[0] in ("0.0.0.0", "::"), message
    assert result.stdout.splitlines()[-1] == "ray up: False left: []"
