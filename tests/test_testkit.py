"""Tests for the test support package: it stays out of the runtime and the wheel, and its S3
helpers (credentials, the moto server, the fault-injecting proxy) do what the fixtures rely on."""

from __future__ import annotations

import ast
import http.client
import http.server
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import setuptools

import pipeline.synthetic
import testkit.s3
import testkit.synthetic
from testkit.s3 import S3_SECRET, FaultyS3Proxy, moto_server, use_test_credentials

ROOT = Path(__file__).resolve().parent.parent

#: Names that only tests and benchmarks use: they must not be in the runtime module.
TEST_ONLY_NAMES = {
    "ClipTruth",
    "ShotTruth",
    "TransitionTruth",
    "EventTruth",
    "clip_truth",
    "random_spec",
    "spec_for_duration",
    "hard_spec",
    "HARD_FORMATS",
    "hard_set",
    "write_zero_byte",
    "write_truncated",
    "write_random_bytes",
    "remux",
    "write_audio_only",
    "write_jpeg_as_mp4",
}


def test_the_runtime_package_never_imports_testkit() -> None:
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "testkit"]
    assert offenders == []


def test_the_wheel_ships_pipeline_and_jobs_but_not_testkit() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = set(setuptools.find_packages(where=str(ROOT), include=find["include"]))
    assert {"pipeline", "pipeline.algorithms", "jobs"} <= packages
    assert not any(p.split(".")[0] in ("testkit", "tests", "benchmarks") for p in packages)


@pytest.mark.parametrize("module", [pipeline.synthetic, pipeline.synthetic.specs, pipeline.synthetic.render, pipeline.synthetic.corpus, testkit.synthetic, testkit.s3])
def test_public_names_are_what_all_says(module: object) -> None:
    exported = getattr(module, "__all__")
    assert len(exported) == len(set(exported))
    assert all(hasattr(module, name) for name in exported)


def test_runtime_module_has_no_test_only_names() -> None:
    assert TEST_ONLY_NAMES.isdisjoint(pipeline.synthetic.__all__)
    assert not any(hasattr(pipeline.synthetic, name) for name in TEST_ONLY_NAMES)
    assert TEST_ONLY_NAMES <= set(testkit.synthetic.__all__)


def test_testkit_re_exports_the_generator_itself() -> None:
    """One generator: testkit's spec classes and renderers are the runtime's own objects."""
    shared = set(pipeline.synthetic.__all__) - {"write_clip", "check_int"}
    assert shared <= set(testkit.synthetic.__all__)
    for name in shared:
        assert getattr(testkit.synthetic, name) is getattr(pipeline.synthetic, name), name


def test_runtime_write_clip_returns_the_path_and_testkit_adds_the_truth(tmp_path: Path) -> None:
    spec = pipeline.synthetic.simple_spec([4, 4], width=32, height=32)
    assert pipeline.synthetic.write_clip(tmp_path / "a.mp4", spec) == tmp_path / "a.mp4"
    assert testkit.synthetic.write_clip(tmp_path / "b.mp4", spec) == testkit.synthetic.clip_truth(spec)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_test_credentials_replace_settings_that_point_elsewhere() -> None:
    environ = {"AWS_PROFILE": "prod", "AWS_ENDPOINT_URL": "https://example.invalid", "AWS_SESSION_TOKEN": "t", "HOME": "/h"}
    use_test_credentials(environ)
    assert environ == {
        "AWS_ACCESS_KEY_ID": "vindex-test-key",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": "/h",
    }


class _Echo(http.server.BaseHTTPRequestHandler):
    """An upstream that answers every GET with its method and path."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = f"{self.command} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy() -> Iterator[FaultyS3Proxy]:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    faulty = FaultyS3Proxy(f"http://127.0.0.1:{upstream.server_address[1]}")
    yield faulty
    faulty.close()
    upstream.shutdown()
    upstream.server_close()


def _get(endpoint: str, path: str) -> tuple[int, bytes]:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_proxy_injects_faults_a_set_number_of_times_and_counts_requests(proxy: FaultyS3Proxy) -> None:
    proxy.fail("/bucket/flaky.mp4", "500", times=2)
    proxy.fail("bucket/denied.mp4", "403")
    answers = [_get(proxy.endpoint, "/bucket/flaky.mp4") for _ in range(3)]
    assert [status for status, _ in answers] == [500, 500, 200]
    assert b"<Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message>" in answers[0][1]
    assert answers[2][1] == b"GET /bucket/flaky.mp4"
    for _ in range(3):
        status, body = _get(proxy.endpoint, "/bucket/denied.mp4")
        assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"<Key>bucket/denied.mp4</Key>" in body
    assert _get(proxy.endpoint, "/bucket/other.mp4") == (200, b"GET /bucket/other.mp4")
    assert proxy.hits == {"bucket/flaky.mp4": 3, "bucket/denied.mp4": 3, "bucket/other.mp4": 1}
    proxy.clear()
    assert proxy.hits == {} and _get(proxy.endpoint, "/bucket/denied.mp4")[0] == 200


def test_proxy_drops_the_connection_without_an_answer(proxy: FaultyS3Proxy) -> None:
    proxy.fail("bucket/dropped.mp4", "drop", times=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _get(proxy.endpoint, "/bucket/dropped.mp4")
    assert _get(proxy.endpoint, "/bucket/dropped.mp4") == (200, b"GET /bucket/dropped.mp4")


def test_moto_server_answers_while_open_and_is_gone_after(tmp_path: Path) -> None:
    with moto_server(tmp_path / "moto.log") as endpoint:
        host, port = endpoint.removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        status, body = _get(endpoint, "/")
        assert status == 200 and b"ListAllMyBucketsResult" in body
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def test_the_loopback_cluster_gives_each_node_ports_of_its_own_inside_its_block(tmp_path: Path) -> None:
    """Head and worker nodes (restarted ones included) never share a port, and none leaves the
    cluster's block, so two clusters on other blocks never collide."""
    from testkit.cluster import PORT_BLOCK, LoopbackCluster

    cluster = LoopbackCluster(tmp_path, base_port=31000, ray_temp_dir=tmp_path / "ray")
    taken = {cluster.gcs_port, cluster.dashboard_port, cluster.base_port + 2}
    for offset in range(100, PORT_BLOCK, 100):  # the head's hundred, then each worker node's
        ports = set()
        for option in cluster._node_ports(offset):
            ports.add(int(option.split("=")[1]))
        low, high = min(ports), max(ports)
        ports |= set(range(low + 10, high + 1))  # the worker processes' range
        assert taken.isdisjoint(ports) and high < cluster.base_port + PORT_BLOCK
        taken |= ports
    with pytest.raises(RuntimeError, match="not started"):
        cluster.netns(["true"])
