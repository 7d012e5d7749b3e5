"""Where a video's bytes come from, decided in one place: :func:`open_media`.

Probing, span cutting and both decoders open a video only through this module, so the rule
(local path, span copy, staged copy or ranged read) and its retries are written once; and
where Ray's workers read a listed video from, when the driver's location is not theirs, is
:func:`worker_readable`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.media import spans
from pipeline.media.spans import NO_SPAN, PlannedSpan, Span
from pipeline.redaction import redact
from pipeline.sources.listing import VideoObject
from pipeline.sources.reading import PROCESS_LOCAL_PROTOCOLS, is_utf8, local_path, open_input, protocol_of, with_retries

log = logging.getLogger(__name__)

#: Read size when PyAV reads a remote object through fsspec.
REMOTE_BLOCK_BYTES = 1 << 20
#: Bytes per read when staging a remote object to a local file.
STAGE_CHUNK_BYTES = 8 << 20
#: Tries at a free random name for a temporary link before giving up.
ALIAS_ATTEMPTS = 100

#: How a video's bytes reach a decoder (see :func:`open_media`).
MediaKind = Literal["local", "span", "staged", "ranged"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("local", "span", "staged", "ranged")


@dataclass(frozen=True)
class MediaSource:
    """One opened video, as a decoder takes it: a local file's path, or a file object.

    ``kind`` says which rule of :func:`open_media` chose it; tests observe the choice through it.
    """

    uri: str
    kind: MediaKind
    #: A local file to open by name: the video itself (local), its span (span) or a copy (staged).
    path: str | None = None
    #: A file object reading the object in small ranges (ranged).
    file: Any = None
    #: The span copied, where ``kind`` is ``span``: its frame ``n`` is the video's ``first + n``.
    span: Span | None = None

    @property
    def target(self) -> Any:
        """What PyAV opens: the path, or else the file object."""
        return self.path if self.path is not None else self.file

    @property
    def first_frame(self) -> int:
        """The video's frame number of this source's frame 0 (non-zero for a span only)."""
        return self.span.first if self.span is not None else 0


@contextlib.contextmanager
def open_media(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    frames: tuple[int, int | None] | None = None,
    needs_path: bool = False,
    planned: PlannedSpan | None = None,
) -> Iterator[MediaSource]:
    """Open ``uri`` for a decoder, choosing where its bytes come from by this rule, in order:

    1. **span**: ``frames=(first, stop)`` given (``stop`` None: to the end) and the container
       indexes every frame: the keyframe-aligned packets covering those frames, copied to a
       small local file (read through rule 2 or 4, transient errors retried). ``planned`` is
       what planning found for those frames (:func:`pipeline.media.spans.span_bounds` on the
       index probing read): :data:`~pipeline.media.spans.NO_SPAN` skips the cut without
       opening the container, a span is cut without reading the index through again. Where no
       span can be cut (no complete index, the span would be the whole video, the cut fails),
       the whole video by the rules below: it then reports what is wrong with the video.
    2. **local**: a local file: its path. With ``needs_path`` (a decoder that takes UTF-8 file
       names only, such as decord) and a name that is not UTF-8, a UTF-8 link to it.
    3. **staged**: a remote object and ``needs_path``: the whole object streamed to a local
       temporary file, transient errors retried. decord reads a file object whole into
       memory, so a remote object is decoded from a local copy instead.
    4. **ranged**: a remote object otherwise: a file object fetching only the byte ranges the
       demuxer asks for (PyAV).

    Temporary files (span, staged copy, link) are deleted on exit. Reads of a ranged or local
    source are not retried here: the caller retries its whole read (as
    :func:`pipeline.media.probe.probe` does).
    """
    with contextlib.ExitStack() as stack:
        wanted = frames is not None and planned != NO_SPAN
        span = _cut(uri, storage_options, frames, planned) if frames is not None and wanted else None
        if span is not None:
            stack.callback(_unlink, span.path)
            yield MediaSource(uri, "span", path=span.path, span=span)
        else:
            yield stack.enter_context(_whole(uri, storage_options, needs_path))


@contextlib.contextmanager
def _whole(uri: str, storage_options: dict[str, Any] | None, needs_path: bool) -> Iterator[MediaSource]:
    """The whole video by rules 2-4 of :func:`open_media`."""
    with contextlib.ExitStack() as stack:
        path = local_path(uri)
        if path is not None:
            if needs_path and not is_utf8(path):
                path = _utf8_alias(path)
                stack.callback(_unlink, path)
            source = MediaSource(uri, "local", path=path)
        elif needs_path:
            staged = with_retries(lambda: _stage_locally(uri, storage_options), uri)
            stack.callback(_unlink, staged)
            source = MediaSource(uri, "staged", path=staged)
        else:
            file = stack.enter_context(open_input(uri, storage_options, block_size=REMOTE_BLOCK_BYTES))
            source = MediaSource(uri, "ranged", file=file)
        yield source


def open_av(media: MediaSource) -> Any:
    """A PyAV input container on an opened source (use it as a context manager)."""
    import av

    return av.open(media.target, mode="r", metadata_errors="ignore")


@contextlib.contextmanager
def open_container(uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """A PyAV input container on the whole video (a local path, or ranged reads: :func:`open_media`)."""
    with open_media(uri, storage_options) as media, open_av(media) as container:
        yield container


def _cut(
    uri: str, storage_options: dict[str, Any] | None, frames: tuple[int, int | None], planned: PlannedSpan | None
) -> Span | None:
    """:func:`~pipeline.media.spans.cut_span` on the video (opened by rule 2 or 4), transient
    storage errors retried; None (the whole file) where the cut itself fails."""
    import av

    def cut() -> Span | None:
        with _whole(uri, storage_options, needs_path=False) as media, open_av(media) as container:
            return spans.cut_span(container, frames[0], frames[1], planned)

    try:
        span = with_retries(cut, uri)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        log.info("%s: no span cut (%s); decoding the whole file", redact(uri), exc)
        return None
    if span is None and planned is not None:
        log.info("%s: the span planned (%d frames from %d) is not in the file; decoding the whole file",
                 redact(uri), planned.frames, planned.first)
    return span


@contextlib.contextmanager
def worker_readable(todo: list[VideoObject], storage_options: dict[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
    """Listing rows whose ``location`` Ray workers can read.

    Objects of a process-local filesystem (memory://) exist only in the driver, so they are
    copied to a local temporary folder for the run; everything else is read where it is.
    """
    rows = [v.to_row() for v in todo]
    if not rows or protocol_of(rows[0]["uri"]) not in PROCESS_LOCAL_PROTOCOLS:
        yield rows
        return
    with tempfile.TemporaryDirectory(prefix="vindex-staged-") as folder:
        for row in rows:
            target = os.path.join(folder, row["video_id"] + os.path.splitext(row["uri"])[1])
            with open_input(row["uri"], storage_options) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            row["location"] = target
        yield rows


def _stage_locally(uri: str, storage_options: dict[str, Any] | None) -> str:
    """Stream a remote object to a temporary file in chunks; returns its path."""
    suffix = os.path.splitext(uri)[1][:8]
    fd, path = tempfile.mkstemp(prefix="vindex-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, open_input(uri, storage_options) as src:
            shutil.copyfileobj(src, out, STAGE_CHUNK_BYTES)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _utf8_alias(path: str) -> str:
    """A symbolic link with a UTF-8 name to a local file whose name is not UTF-8 (decord takes
    only UTF-8 paths); the caller deletes it."""
    for _ in range(ALIAS_ATTEMPTS):
        alias = os.path.join(tempfile.gettempdir(), f"vindex-alias-{os.urandom(8).hex()}{os.path.splitext(path)[1][:8]}")
        try:
            os.symlink(os.path.abspath(path), alias)
            return alias
        except FileExistsError:
            continue
    raise OSError(f"cannot create a temporary link to {path!r}")


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
