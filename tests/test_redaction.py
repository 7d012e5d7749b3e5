"""No credential typed into a URL is stored, logged or printed; no terminal control is printed raw."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.execution.submit import index_entrypoint
from pipeline.index.query import format_result
from pipeline.redaction import RedactingFilter, printable, redact, strip_userinfo
from pipeline.sources.listing import video_id_for
from testkit import synthetic

PASSWORD = "s3cr3t-Pa55"
USER = "alice"


@pytest.mark.parametrize(
    ("uri", "stripped"),
    [
        (f"http://{USER}:{PASSWORD}@127.0.0.1:8000/x.mp4", "http://127.0.0.1:8000/x.mp4"),
        (f"https://{USER}@host/a/b.mp4?x=1", "https://host/a/b.mp4?x=1"),
        ("s3://bucket/key@2x.mp4", "s3://bucket/key@2x.mp4"),  # an @ in a key is not userinfo
        ("file:///home/a@b/v.mp4", "file:///home/a@b/v.mp4"),
        ("/plain/path.mp4", "/plain/path.mp4"),
    ],
)
def test_strip_userinfo(uri: str, stripped: str) -> None:
    assert strip_userinfo(uri) == stripped


def test_redact_masks_every_url_in_a_message() -> None:
    text = f"GET http://{USER}:{PASSWORD}@h/x.mp4 failed; retry https://u:p@h2/y then s3://b/k@2"
    assert redact(text) == "GET http://***@h/x.mp4 failed; retry https://***@h2/y then s3://b/k@2"


def test_a_video_id_does_not_depend_on_the_credentials() -> None:
    assert video_id_for(f"http://{USER}:{PASSWORD}@h/x.mp4") == video_id_for("http://h/x.mp4")


def test_printable_escapes_controls_and_keeps_text() -> None:
    name = "a\x1b]0;OWNED\x07\x1b[2J\nforged line\r\x9b.mp4 é\t"
    assert printable(name) == "a\\x1b]0;OWNED\\x07\\x1b[2J\\x0aforged line\\x0d\\x9b.mp4 é\t"


def test_a_query_table_escapes_controls_while_csv_and_json_keep_them() -> None:
    import pyarrow as pa

    name = "file:///v/a\x1b]0;OWNED\x07\x1b[2J\nx.mp4"
    table = pa.table({"uri": [name]})
    text = format_result(table, "table", max_width=200)
    assert "\x1b" not in text and "\x07" not in text and len(text.splitlines()) == 4
    assert "a\\x1b]0;OWNED\\x07\\x1b[2J\\x0ax.mp4" in text
    assert json.loads(format_result(table, "json"))["uri"] == name
    assert name in format_result(table, "csv")


def test_log_lines_are_redacted_and_escaped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    logger.warning("cannot read %s", f"http://{USER}:{PASSWORD}@h/a\x1b[2J.mp4")
    assert caplog.messages == ["cannot read http://***@h/a\\x1b[2J.mp4"]


def test_an_endpoint_url_with_credentials_is_refused_without_printing_them() -> None:
    with pytest.raises(ConfigError, match=r"storage.endpoint_url") as caught:
        load_config(None, {"storage.endpoint_url": f"https://KEY:{PASSWORD}@minio.local"})
    assert PASSWORD not in str(caught.value) and "https://***@minio.local" in str(caught.value)


def test_a_job_is_never_submitted_with_credentials_in_its_command_line() -> None:
    with pytest.raises(ConfigError, match="holds credentials") as caught:
        index_entrypoint(f"http://{USER}:{PASSWORD}@h/x.mp4", "s3://b/idx")
    assert PASSWORD not in str(caught.value)


def test_cli_errors_mask_credentials_and_escape_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"memory://{USER}:{PASSWORD}@nowhere/a\x1b]0;OWNED\x07"
    assert main(["run", missing, "--index", str(tmp_path / "idx")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert PASSWORD not in err and "\x1b" not in err and "\x07" not in err
    assert "memory://***@nowhere/a\\x1b]0;OWNED\\x07" in err


class _BasicAuthHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder to requests carrying the test's user and password only."""

    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def _allowed(self) -> bool:
        if self.headers.get("Authorization") == self.expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="videos"')
        self.end_headers()
        return False

    def do_HEAD(self) -> None:  # noqa: N802 - the handler's protocol
        if self._allowed():
            super().do_HEAD()

    def do_GET(self) -> None:  # noqa: N802
        if self._allowed():
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_videos(tmp_path: Path) -> Iterator[str]:
    """A good clip and an empty file behind HTTP basic auth on 127.0.0.1; yields the server's base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    synthetic.write_clip(folder / "good.mp4", synthetic.simple_spec([40, 40], "cut", contents=[1, 2], width=160, height=96))
    synthetic.write_zero_byte(folder / "empty.mp4")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_BasicAuthHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _every_value(folder: Path) -> Iterator[str]:
    """Every string value of every table under ``folder``, and every file's raw text."""
    for path in folder.rglob("*"):
        if path.is_file():
            yield path.read_bytes().decode("latin-1")
    for table_dir in {p.parent for p in folder.rglob("*.parquet") if "_delta_log" not in str(p)}:
        for row in pads.dataset(str(table_dir)).to_table().to_pylist():
            yield from (str(v) for v in row.values())


def test_a_password_in_a_source_url_is_used_and_never_kept(
    ray_local, http_videos: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    """The password reads the objects; it is in no table, export, report or output afterwards."""
    base = http_videos.replace("http://", f"http://{USER}:{PASSWORD}@")
    index = tmp_path / "idx"
    outputs = []
    for video in ("good.mp4", "empty.mp4"):
        code = main(["--log-level", "INFO", "run", f"{base}/{video}", "--index", str(index), "--quiet"])
        assert code == (EXIT_OK if video == "good.mp4" else EXIT_SOME_FAILED)
        outputs.append(capsys.readouterr())
    assert main(["query", str(index), "select uri, status, error_message from videos order by uri", "--format", "csv"]) == EXIT_OK
    outputs.append(capsys.readouterr())
    lines = outputs[-1].out.splitlines()
    assert lines[1].startswith(f"{http_videos}/empty.mp4,failed,")
    assert lines[2] == f"{http_videos}/good.mp4,ok,"
    assert main(["query", str(index), "select source, config from runs"]) == EXIT_OK
    assert main(["status", str(index)]) == EXIT_OK
    assert main(["report", str(index), "--out", str(tmp_path / "report")]) == EXIT_OK
    assert main(["export", str(index), str(tmp_path / "export")]) == EXIT_OK
    outputs.append(capsys.readouterr())

    printed = "".join(o.out + o.err for o in outputs) + caplog.text
    assert PASSWORD not in printed and USER not in printed
    for folder in (index, tmp_path / "report", tmp_path / "export"):
        leaks = [value for value in _every_value(folder) if PASSWORD in value or f"{USER}:" in value]
        assert leaks == [], folder
