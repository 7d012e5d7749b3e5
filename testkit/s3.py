"""A real S3 API on loopback for tests: moto's server in a child process, and a proxy in front
of it that injects storage faults (denied, failing, dropped and vanishing objects).

Tests talk to a real HTTP server rather than a mock, so s3fs, Arrow and delta-rs all take
the same network path they take against a bucket in the cloud.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "S3_SECRET",
    "TEST_CREDENTIALS",
    "use_test_credentials",
    "free_port",
    "moto_server",
    "SERVER_START_TIMEOUT_S",
    "FaultyS3Proxy",
]

#: The secret access key tests use; distinctive, so a test can assert it never reaches tables or logs.
S3_SECRET = "vindex-test-secret-never-logged"
#: Credentials for the local server (moto accepts any).
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "vindex-test-key",
    "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Settings that would send requests elsewhere than the endpoint a test names.
_FOREIGN_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN")
#: How long moto's server may take to accept connections.
SERVER_START_TIMEOUT_S = 30.0
#: Between two connection attempts while the server starts.
_POLL_INTERVAL_S = 0.1
#: How long the server may take to exit once asked to, before it is killed.
SERVER_STOP_TIMEOUT_S = 10.0
#: How long the proxy waits on the server for one request.
UPSTREAM_TIMEOUT_S = 60.0


def use_test_credentials(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put the test credentials in ``environ`` and drop settings that point elsewhere.

    Call it before Ray starts, so its workers inherit the same credentials.
    """
    environ.update(TEST_CREDENTIALS)
    for name in _FOREIGN_SETTINGS:
        environ.pop(name, None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log_path: Path, *, start_timeout_s: float = SERVER_START_TIMEOUT_S) -> Iterator[str]:
    """A real S3 API server (moto's server mode) on 127.0.0.1; yields its endpoint URL.

    Its output goes to ``log_path`` (quoted when it fails to start); it is stopped by PID on exit.
    """
    port = free_port()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(_POLL_INTERVAL_S)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class _Rule:
    """A fault to inject for one object: its kind, and how many more times (None: always)."""

    kind: str
    times: int | None


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
        self.upstream = urlsplit(upstream)
        self.rules: dict[str, _Rule] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
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
            self.rules[key.strip("/")] = _Rule(kind, times)

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
            if rule.times is not None:
                if rule.times <= 0:
                    return None
                rule.times -= 1
            return rule.kind

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        """Answer one request: with its object's fault, else with the server's own answer."""
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
            request.connection.shutdown(socket.SHUT_RDWR)
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
        upstream = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=UPSTREAM_TIMEOUT_S)
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
