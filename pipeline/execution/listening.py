"""The listening sockets of given processes, from /proc (Linux): to check what a process tree exposes.

A socket's local address is read, not probed by connecting: inside a loopback-only network
namespace a socket bound to 0.0.0.0 answers only on loopback, yet it would answer on every
interface of a host with a network. ``/proc/PID/fd`` gives each process's socket inodes,
``/proc/self/net/{tcp,tcp6,udp,udp6}`` their addresses (the processes are assumed to share
this process's network namespace, as a process's children do).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: TCP state LISTEN in /proc/net/tcp; an unconnected UDP socket (state CLOSE, no peer) receives too.
_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"
PROTOCOLS = ("tcp", "tcp6", "udp", "udp6")
_NET = "/proc/self/net"

_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


@dataclass(frozen=True)
class Listener:
    """A socket that accepts from anywhere its address allows."""

    pid: int
    protocol: str
    address: str
    port: int
    inode: int

    @property
    def on_loopback(self) -> bool:
        """Whether only this machine can reach it: 127.0.0.0/8 or ::1 (0.0.0.0 and :: are every interface)."""
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                return ip == _LOOPBACK_V6
            ip = ip.ipv4_mapped  # an IPv6 socket bound to 127.0.0.1 shows ::ffff:127.0.0.1
        return ip in _LOOPBACK_V4

    def describe(self) -> str:
        name = "this process" if self.pid == os.getpid() else process_name(self.pid)
        return f"{name} (pid {self.pid}): {self.protocol} {self.address}:{self.port}"


def can_list() -> bool:
    """Whether this system shows sockets in /proc (Linux)."""
    return os.path.exists(f"{_NET}/tcp")


def listeners(pids: Iterable[int]) -> list[Listener]:
    """Every listening TCP and unconnected UDP socket held by these processes.

    A process that ends meanwhile is skipped; one that cannot be read raises ``PermissionError``
    (its sockets would go unchecked).
    """
    owners = _socket_owners(pids)
    found: list[Listener] = []
    if not owners:
        return found
    for protocol in PROTOCOLS:
        try:
            with open(f"{_NET}/{protocol}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 (or UDP) in this kernel
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if inode not in owners:
                continue
            if protocol.startswith("tcp"):
                listening = state == _TCP_LISTEN
            else:
                listening = state == _UDP_UNCONNECTED and decode_address(remote)[1] == 0
            if listening:
                address, port = decode_address(local)
                found.append(Listener(owners[inode], protocol, address, port, inode))
    return found


def beyond_loopback(pids: Iterable[int], known: frozenset[int] = frozenset()) -> list[Listener]:
    """The sockets of these processes that listen beyond loopback, less the ``known`` inodes;
    by process and port."""
    found = (s for s in listeners(pids) if not s.on_loopback and s.inode not in known)
    return sorted(found, key=lambda s: (s.pid, s.protocol, s.port))


def _socket_owners(pids: Iterable[int]) -> dict[int, int]:
    """Socket inode -> PID, for the sockets these processes hold."""
    owners = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                owners[int(target[len("socket:[") : -1])] = pid
    return owners


def decode_address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` (the kernel prints each 32-bit word in host order) -> ("127.0.0.1", 8080)."""
    hex_ip, hex_port = hex_address.split(":")
    words = [int(hex_ip[i : i + 8], 16) for i in range(0, len(hex_ip), 8)]
    packed = b"".join(struct.pack("=I", word) for word in words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(hex_port, 16)


def process_name(pid: int) -> str:
    """A short name for ``pid``: a Ray worker's own (``ray::MapWorker``), else its program or script."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return f"pid {pid}"
    first = argv[0].decode(errors="replace").strip()
    if first.startswith("ray::"):
        return first.split()[0]
    programs = [Path(a.decode(errors="replace")).name for a in argv[:3]]
    return next((p for p in programs if p.endswith(".py") or p in ("gcs_server", "raylet")), programs[0])
