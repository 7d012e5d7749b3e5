"""The listening sockets of a process, read from /proc: the check behind an embedded Ray's start."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from pipeline.execution.listening import Listener, beyond_loopback, can_list, decode_address, listeners

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, closed after it."""
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def _listen(opened: list[socket.socket], family: socket.AddressFamily, address: str) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, 0))
    s.listen()
    opened.append(s)
    return s


def _udp(opened: list[socket.socket], address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    opened.append(s)
    return s


def _as_listener(s: socket.socket, protocol: str) -> Listener:
    address, port = s.getsockname()[:2]
    return Listener(os.getpid(), protocol, address, port, os.fstat(s.fileno()).st_ino)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_a_socket_on_every_interface_is_flagged_and_one_on_loopback_passes(opened: list[socket.socket]) -> None:
    assert can_list()
    known = frozenset(s.inode for s in listeners([os.getpid()]))  # what the test process held already
    everywhere = _listen(opened, socket.AF_INET, "0.0.0.0")
    loopback = _listen(opened, socket.AF_INET, "127.0.0.1")
    other_loopback = _listen(opened, socket.AF_INET, "127.0.0.2")
    connected = socket.create_connection(loopback.getsockname())  # a connection is not a listener
    opened.append(connected)
    assert beyond_loopback([os.getpid()], known) == [_as_listener(everywhere, "tcp")]
    mine = {s for s in listeners([os.getpid()]) if s.inode not in known}
    assert mine == {_as_listener(s, "tcp") for s in (everywhere, loopback, other_loopback)}


def test_every_ipv6_interface_is_flagged_and_ipv6_loopback_passes(opened: list[socket.socket]) -> None:
    if not _ipv6():
        pytest.skip("no IPv6 in this network namespace")
    known = frozenset(s.inode for s in listeners([os.getpid()]))
    everywhere = _listen(opened, socket.AF_INET6, "::")
    _listen(opened, socket.AF_INET6, "::1")
    assert beyond_loopback([os.getpid()], known) == [_as_listener(everywhere, "tcp6")]


def test_an_unconnected_udp_socket_listens_too(opened: list[socket.socket]) -> None:
    known = frozenset(s.inode for s in listeners([os.getpid()]))
    everywhere = _udp(opened, "0.0.0.0")
    _udp(opened, "127.0.0.1")
    sender = _udp(opened, "0.0.0.0")
    sender.connect(("127.0.0.1", 9))  # a connected socket receives from its peer only
    assert beyond_loopback([os.getpid()], known) == [_as_listener(everywhere, "udp")]


def test_known_sockets_and_ended_processes_are_left_out(opened: list[socket.socket]) -> None:
    known = frozenset(s.inode for s in listeners([os.getpid()]))
    everywhere = _listen(opened, socket.AF_INET, "0.0.0.0")
    assert beyond_loopback([os.getpid()], known | {os.fstat(everywhere.fileno()).st_ino}) == []
    assert beyond_loopback([2**22 + 1]) == []  # above the kernel's largest PID: no such process, no error


def test_the_address_decoder_reads_the_kernel_format() -> None:
    # 127.0.0.1:8080 as the kernel prints it, in this host's byte order
    word = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]
    assert decode_address(f"{word:08X}:1F90") == ("127.0.0.1", 8080)
    words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"))
    assert decode_address("".join(f"{w:08X}" for w in words) + ":0050") == ("::ffff:127.0.0.1", 80)


@pytest.mark.parametrize(
    ("address", "on_loopback"),
    [("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("0.0.0.0", False), ("::", False), ("::ffff:0.0.0.0", False), ("192.0.2.2", False), ("::2", False)],
)  # fmt: skip
def test_loopback_is_127_0_0_0_slash_8_and_ipv6_1(address: str, on_loopback: bool) -> None:
    assert Listener(1, "tcp6" if ":" in address else "tcp", address, 80, 1).on_loopback is on_loopback
