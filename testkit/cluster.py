"""A real Ray cluster of ``ray start`` nodes on this machine, on loopback only, owned by PID
(``tests/test_cluster.py`` and ``benchmarks/scaling.py``).

The nodes (head 127.0.0.2, workers 127.0.0.3) run inside a network namespace of their own
whose only interface is loopback: Ray's GCS and raylets listen on every interface of their
host, and there the only one is loopback. Every command that talks to the cluster (the
``vindex`` CLI included) runs in that namespace through ``nsenter``. Each node gets its own
ports, from a block drawn at random for the cluster; nothing else can hold a port in a fresh
namespace. The cluster is stopped by PID (SIGTERM, then SIGKILL of every process of its
trees), never with ``ray stop``, which would stop every Ray on the machine. Needs root,
``unshare``, ``nsenter``, ``ip`` and ``ray``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.execution.processes import descendants
from testkit.processes import signal_all, stop_tree

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
#: Every command, the job client included, must use the cluster's auth mode.
AUTH_MODE = "disabled"
#: A node's ``ray start`` must report itself up, and the cluster show its nodes, within this.
START_TIMEOUT_S = 120.0
#: Each node's object store: two of them and a job's actors fit a small machine's memory.
OBJECT_STORE_BYTES = 300_000_000
#: The ports of one cluster: a block of this many from ``base_port`` (head, then each node's
#: own hundred).
PORT_BLOCK = 1000


def namespaces_available() -> bool:
    """Whether this machine can hold the cluster: Linux, root, the tools, ``unshare --net``."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip", "ray")):
        return False
    return subprocess.run(["unshare", "--net", "true"], check=False, capture_output=True).returncode == 0


@dataclass
class LoopbackCluster:
    """A head and worker nodes of ``node_cpus`` CPUs each in a private network namespace."""

    folder: Path
    base_port: int
    node_cpus: int = 1
    #: Environment of every node and command, on top of this process's (``RAY_AUTH_MODE`` set).
    node_env: Mapping[str, str] = field(default_factory=dict)
    #: Each node's processes confined to a core of their own (node i on core i), as on real
    #: 1-CPU nodes; otherwise a one-node cluster also borrows the machine's idle cores.
    pin: bool = False
    #: Where to copy the session's logs (every node's, workers' included) before they are removed.
    keep_logs: Path | None = None
    #: Ray's session folder: short, because Ray's unix socket paths under it must stay within
    #: 107 bytes (pytest's tmp_path is too deep).
    ray_temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vindex-ray-")))
    holder: subprocess.Popen[bytes] | None = None
    head: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gcs_port(self) -> int:
        return self.base_port

    @property
    def dashboard_port(self) -> int:
        return self.base_port + 1

    @property
    def address(self) -> str:
        """The job server's (and dashboard's) address, inside the namespace."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def worker(self) -> subprocess.Popen[bytes] | None:
        """The worker node started last."""
        return self.workers[-1] if self.workers else None

    @property
    def node_processes(self) -> list[subprocess.Popen[bytes]]:
        """Each node's ``ray start --block``, head first (not the namespace's holder)."""
        return [p for p in (self.head, *self.workers) if p is not None]

    def netns(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the cluster's namespace."""
        if self.holder is None:
            raise RuntimeError("the cluster is not started")
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *argv]

    def _node_ports(self, offset: int) -> list[str]:
        """Every port a node opens, from its own hundred of the cluster's block."""
        port = self.base_port + offset
        return [
            f"--node-manager-port={port}", f"--object-manager-port={port + 1}",
            f"--metrics-export-port={port + 2}", f"--dashboard-agent-listen-port={port + 3}",
            f"--dashboard-agent-grpc-port={port + 4}", f"--runtime-env-agent-port={port + 5}",
            f"--min-worker-port={port + 10}", f"--max-worker-port={port + 99}",
        ]  # fmt: skip

    def _common(self) -> list[str]:
        return [
            "--block", "--disable-usage-stats", f"--num-cpus={self.node_cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={self.ray_temp_dir}",
        ]  # fmt: skip

    def _pinned(self, node: int) -> list[str]:
        """``taskset`` for node ``node``'s processes (all it starts inherit the affinity)."""
        return ["taskset", "-c", str(node % (os.cpu_count() or 1))] if self.pin else []

    def start(self, nodes: int = 2) -> None:
        """The namespace, the head, then ``nodes - 1`` worker nodes; returns once all are alive."""
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": AUTH_MODE}
        self.env |= dict(self.node_env)
        self.holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep infinity"])
        deadline = time.monotonic() + 10
        while "UP" not in self._run_in_netns(["ip", "-o", "link", "show", "lo"]):
            if time.monotonic() > deadline:
                raise RuntimeError("loopback of the namespace did not come up")
            time.sleep(0.1)
        self.head = self._start_node(
            "head",
            self._pinned(0) + [
                "ray", "start", "--head", *self._common(), f"--node-ip-address={HEAD_IP}", f"--port={self.gcs_port}",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.base_port + 2}", *self._node_ports(100),
            ],
        )  # fmt: skip
        self.wait_for_alive_nodes(1)
        for _ in range(nodes - 1):
            self.start_worker()

    def start_worker(self) -> None:
        """One more worker node (a new one after :meth:`kill_worker_node`); returns once the
        cluster shows the head and every running worker node alive, and no other node."""
        number = len(self.workers) + 1
        self.workers.append(
            self._start_node(
                f"worker{number}",
                self._pinned(number) + [
                    "ray", "start", *self._common(), f"--address={HEAD_IP}:{self.gcs_port}",
                    f"--node-ip-address={WORKER_IP}", *self._node_ports(100 + 100 * number),
                ],
            )
        )  # fmt: skip
        self.wait_for_alive_nodes(1 + sum(worker.poll() is None for worker in self.workers))

    def _start_node(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        if 100 * (len(self.workers) + 2) > PORT_BLOCK:
            raise RuntimeError(f"no ports left in the cluster's block for node {name}")
        log_path = self.folder / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(self.netns(argv), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_tree(process)
                raise RuntimeError(f"ray start failed ({name}):\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return process

    def kill_worker_node(self) -> int:
        """SIGKILL the last worker node's ``ray start``, raylet, agents and workers; how many processes."""
        worker = self.worker
        if worker is None:
            raise RuntimeError("no worker node to kill")
        victims = [worker.pid, *descendants(worker.pid)]
        signal_all(victims, signal.SIGKILL)
        worker.wait()
        return len(victims)

    def stop(self) -> None:
        """Every node, then the namespace's holder, by PID; the session folder removed (its logs
        copied to :attr:`keep_logs` first, where set)."""
        for process in (*reversed(self.workers), self.head, self.holder):
            if process is not None:
                stop_tree(process)
        if self.keep_logs is not None:
            for logs in self.ray_temp_dir.glob("session_2*/logs"):
                shutil.copytree(logs, self.keep_logs / logs.parent.name, dirs_exist_ok=True)
        shutil.rmtree(self.ray_temp_dir, ignore_errors=True)

    def _run_in_netns(self, argv: list[str], timeout: float = 60) -> str:
        return subprocess.run(
            self.netns(argv), check=False, capture_output=True, text=True, timeout=timeout, env=self.env
        ).stdout

    def state(self, resource: str) -> list[dict[str, Any]]:
        """Ray's state API (``/api/v0/RESOURCE``), read from inside the namespace."""
        script = (
            "import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen('{self.address}/api/v0/{resource}?limit=1000', timeout=10)"
            ".read().decode())"
        )
        result = subprocess.run(
            self.netns([sys.executable, "-c", script]), capture_output=True, text=True, timeout=60, env=self.env
        )
        if result.returncode:
            raise RuntimeError(result.stderr[-500:])
        return list(json.loads(result.stdout)["data"]["result"]["result"])

    def alive_node_ips(self, distinct: bool = True) -> Any:
        """The IPs of the alive nodes: a set, or with ``distinct=False`` a list, one per node."""
        ips = [node["node_ip"] for node in self.state("nodes") if node["state"] == "ALIVE"]
        return set(ips) if distinct else ips

    def wait_for_alive_nodes(self, count: int) -> None:
        """Until the dashboard answers and lists ``count`` alive nodes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: Any = "no answer"
        while True:
            try:
                seen = self.alive_node_ips(distinct=False)
                if len(seen) == count:
                    return
            except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired) as exc:
                seen = f"no answer ({str(exc)[-200:]})"
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not show {count} alive nodes: {seen}")
            time.sleep(0.5)

    def vindex_argv(self, *args: str) -> list[str]:
        """The ``vindex`` command line for ``args``, run where the cluster is reachable."""
        return self.netns([sys.executable, "-m", "pipeline.cli", *args, "--address", self.address])

    def vindex(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``vindex ARGS --address ...`` run to its end in the namespace; its output captured."""
        return subprocess.run(self.vindex_argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env)


@contextmanager
def loopback_cluster(
    nodes: int,
    folder: Path,
    *,
    node_env: Mapping[str, str] | None = None,
    pin: bool = False,
    keep_logs: Path | None = None,
) -> Iterator[LoopbackCluster]:
    """A fresh cluster of ``nodes`` nodes on a random block of ports, stopped by PID when the
    block ends, however it ends (a failed start included)."""
    cluster = LoopbackCluster(
        folder,
        base_port=random.randrange(20000, 59000, PORT_BLOCK),
        node_env=dict(node_env or {}),
        pin=pin,
        keep_logs=keep_logs,
    )
    try:
        cluster.start(nodes)
        yield cluster
    finally:
        cluster.stop()


__all__ = [
    "AUTH_MODE",
    "HEAD_IP",
    "WORKER_IP",
    "LoopbackCluster",
    "loopback_cluster",
    "namespaces_available",
]
