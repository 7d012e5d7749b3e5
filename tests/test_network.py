"""The embedded Ray of `vindex run` listens on loopback only: every socket of its process tree.

The sockets are read from /proc (``/proc/PID/fd`` for the process's socket inodes,
``/proc/PID/net/{tcp,tcp6,udp,udp6}`` for their local addresses), so the check does not
depend on reachability: inside a loopback-only network namespace a socket bound to 0.0.0.0
cannot be told apart from one bound to 127.0.0.1 by connecting, but its local address still
says 0.0.0.0.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.execution.processes import descendants
from testkit import synthetic

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")

#: TCP state LISTEN in /proc/net/tcp; an unconnected UDP socket (state CLOSE, no peer) receives too.
_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"
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
class Listener:
    """A socket that accepts from anywhere its address allows."""

    process: str
    protocol: str
    address: str
    port: int

    @property
    def on_loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv6 socket bound to 127.0.0.1 shows ::ffff:127.0.0.1
        return ip in ipaddress.ip_network("127.0.0.0/8") or ip == ipaddress.IPv6Address("::1")


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> PID, for the sockets these processes hold."""
    owners = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # ended, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[len("socket:[") : -1])] = pid
    return owners


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` (the kernel prints each 32-bit word in host order) -> ("127.0.0.1", 8080)."""
    hex_ip, hex_port = hex_address.split(":")
    words = [int(hex_ip[i : i + 8], 16) for i in range(0, len(hex_ip), 8)]
    packed = b"".join(struct.pack("=I", word) for word in words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(hex_port, 16)


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return f"pid {pid}"
    # Ray workers rename themselves (``ray::MapWorker(...)``); other processes keep their program.
    first = argv[0].decode(errors="replace").strip()
    if first.startswith("ray::"):
        return first.split()[0]
    programs = [Path(a.decode(errors="replace")).name for a in argv[:3]]
    return next((p for p in programs if p.endswith(".py") or p in ("gcs_server", "raylet")), programs[0])


def listeners(root: int) -> set[Listener]:
    """Every listening TCP and unconnected UDP socket of ``root`` and its descendants."""
    owners = _socket_owners([root, *descendants(root)])
    found = set()
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/{root}/net/{protocol}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            listening = state == _TCP_LISTEN if protocol.startswith("tcp") else (
                state == _UDP_UNCONNECTED and _address(remote)[1] == 0
            )  # fmt: skip
            if listening and inode in owners:
                address, port = _address(local)
                found.add(Listener(_process_name(owners[inode]), protocol, address, port))
    return found


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


def _report(seen: set[Listener]) -> str:
    return "\n".join(f"  {s.process}: {s.protocol} {s.address}:{s.port}" for s in sorted(seen, key=repr))


def test_the_address_decoder_reads_the_kernel_format() -> None:
    # 127.0.0.1:8080 as the kernel prints it, in this host's byte order
    word = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]
    assert _address(f"{word:08X}:1F90") == ("127.0.0.1", 8080)
    words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"))
    assert _address("".join(f"{w:08X}" for w in words) + ":0050") == ("::ffff:127.0.0.1", 80)
    assert Listener("x", "tcp6", "::ffff:127.0.0.1", 1).on_loopback
    assert Listener("x", "tcp", "127.0.0.2", 1).on_loopback
    assert not Listener("x", "tcp", "0.0.0.0", 1).on_loopback
    assert not Listener("x", "tcp6", "::", 1).on_loopback


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
    seen: set[Listener] = set()
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
