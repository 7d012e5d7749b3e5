"""Shared fixtures: generated clips with known structure, a local Ray, model outputs.

Everything is generated in temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import synthetic

# Keep Ray from writing a token file under the home directory and from joining a stale cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("RAY_ADDRESS", None)
# Credentials for the local S3 server, set before Ray starts so its workers inherit them.
# The secret is distinctive so tests can assert it never reaches tables or logs.
S3_SECRET = "vindex-test-secret-never-logged"
os.environ.update(
    AWS_ACCESS_KEY_ID="vindex-test-key",
    AWS_SECRET_ACCESS_KEY=S3_SECRET,
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
for _var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

#: A clip with every kind of transition: cut, dissolve, fade, cut.
MIXED_SPEC = synthetic.simple_spec([60, 70, 65, 80, 60], ["cut", "dissolve:12", "fade:16", "cut"], seed=3)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def mixed_clip(clips_dir: Path) -> tuple[Path, synthetic.ClipTruth]:
    """A generated 320x180 clip with a cut, a dissolve, a fade and another cut."""
    path = clips_dir / "mixed.mp4"
    truth = synthetic.write_clip(path, MIXED_SPEC)
    return path, truth


@pytest.fixture(scope="session")
def shot_model():  # type: ignore[no-untyped-def]
    from pipeline.models.transnetv2 import load_transnetv2

    return load_transnetv2()


@pytest.fixture(scope="session")
def ray_local():  # type: ignore[no-untyped-def]
    """An embedded local Ray for the tests that go through Ray Data."""
    import ray

    from pipeline.execution.ray_runtime import init_local_ray

    init_local_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API server (moto's server mode) on 127.0.0.1, stopped by PID at the end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """An s3fs filesystem on the local server; buckets made by a test are removed after it."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    before = set(fs.ls("/"))
    yield fs
    for bucket in set(fs.ls("/", refresh=True)) - before:
        fs.rm(bucket, recursive=True)


class FaultyS3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of the local S3 server that injects storage faults.

    ``fail(key, kind, times)`` makes the next ``times`` requests for object ``key`` (every one
    when ``times`` is None) answer with ``kind``: ``403`` (AccessDenied), ``500``
    (InternalError), ``drop`` (the connection is closed without an answer) or ``delete``
    (the object is really deleted from the server, then the request goes through).
    Everything else is forwarded unchanged; ``hits[key]`` counts the requests per object.
    """

    ERRORS = {
        "403": (403, "AccessDenied", "Access Denied"),
        "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    }

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        from urllib.parse import urlsplit

        self.upstream = urlsplit(upstream)
        self.rules: dict[str, list[object]] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, key: str, kind: str, times: int | None = None) -> None:
        with self.lock:
            self.rules[key.strip("/")] = [kind, times]

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.hits.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault_for(self, key: str) -> str | None:
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            rule = self.rules.get(key)
            if rule is None:
                return None
            kind, times = rule
            if times is not None:
                if times <= 0:  # type: ignore[operator]
                    return None
                rule[1] = times - 1  # type: ignore[operator]
            return str(kind)

    def handle(self, request) -> None:  # type: ignore[no-untyped-def]
        import http.client
        from urllib.parse import urlsplit

        key = urlsplit(request.path).path.strip("/")
        body = b""
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(request.rfile.readline().split(b";")[0], 16)
                chunk = request.rfile.read(size + 2)[:size]
                if not size:
                    break
                body += chunk
        elif request.headers.get("Content-Length"):
            body = request.rfile.read(int(request.headers["Content-Length"]))
        fault = self._fault_for(key) if "/" in key else None
        if fault == "drop":
            request.close_connection = True
            request.connection.shutdown(2)
            return
        if fault in self.ERRORS:
            status, code, message = self.ERRORS[fault]
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message><Key>{key}</Key></Error>"
            ).encode()
            request.send_response(status)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(0 if request.command == "HEAD" else len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
            return
        if fault == "delete":
            bucket, _, name = key.partition("/")
            import boto3

            boto3.client("s3", endpoint_url=self.upstream.geturl()).delete_object(Bucket=bucket, Key=name)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or request.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            upstream.request(request.command, request.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        request.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                request.send_header(name, value)
        length = response.getheader("Content-Length") if request.command == "HEAD" else str(len(payload))
        request.send_header("Content-Length", length or "0")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)


@pytest.fixture
def faulty_s3(s3_endpoint: str) -> Iterator[FaultyS3Proxy]:
    """A fault-injecting proxy in front of the local S3 server (see FaultyS3Proxy)."""
    proxy = FaultyS3Proxy(s3_endpoint)
    yield proxy
    proxy.close()


#: An 8K frame: 33 megapixels, 100 MB as RGB.
HUGE_SIZE = (7680, 4320)


@pytest.fixture(scope="session")
def huge_clip(clips_dir: Path) -> Path:
    """A 16-frame 7680x4320 clip with one cut after frame 8 (simple gradients: fast to encode)."""
    import av
    import numpy as np

    path = clips_dir / "huge_8k.mp4"
    width, height = HUGE_SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        ramp = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
        for i in range(16):
            frame = np.broadcast_to(ramp if i < 8 else 255 - ramp, (height, width, 3)).copy()
            frame[..., 1] = 120 * (i // 8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
