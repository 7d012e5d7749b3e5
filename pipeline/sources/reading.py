"""Read a video's bytes: open an object through fsspec, find a local file's path, retry reads.

A local file whose name is not valid UTF-8 is listed under an escaped URI
(:func:`escape_undecodable`); reading undoes the escape, so the URI opens the original file.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from fsspec.core import url_to_fs

from pipeline.retry import retry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Filesystems that live inside one process: Ray workers cannot see their objects.
PROCESS_LOCAL_PROTOCOLS = ("memory",)
LOCAL_PROTOCOLS = ("file", "local")

#: Attempts at reading an object when the store fails transiently (timeouts, 5xx, resets).
READ_ATTEMPTS = 4
READ_BACKOFF_S = 0.5

#: Python decodes a file name's undecodable bytes 0x80-0xFF as lone surrogates U+DC80-U+DCFF
#: ("surrogateescape"), which no UTF-8 string (Arrow, Parquet, uuid5) can hold.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def filesystem_protocol(fs: Any) -> str:
    """A filesystem's main protocol name (fsspec gives a string or a tuple of aliases)."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def is_local(fs: Any) -> bool:
    """Whether ``fs`` is the local disk (the one filesystem with real folders and renames)."""
    return filesystem_protocol(fs) in LOCAL_PROTOCOLS


def protocol_of(uri: str) -> str:
    """The main protocol name of the filesystem that holds ``uri`` (``file``, ``s3``, ``memory``...)."""
    fs, _ = url_to_fs(uri)
    return filesystem_protocol(fs)


def escape_undecodable(path: str) -> str:
    """A local path whose name is not valid UTF-8 as a valid string: each undecodable byte as
    ``%XX`` and, in such a path only, ``%`` as ``%25`` (so :func:`local_path` can undo it).

    Paths that are valid UTF-8 are returned unchanged, so their ``video_id`` never changes.
    """
    if not _ESCAPED_BYTE.search(path):
        return path
    return _ESCAPED_BYTE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", path.replace("%", "%25"))


def _unescape_local(path: str) -> str:
    """Undo :func:`escape_undecodable` where the escaped name is not itself a file."""
    if "%" not in path or os.path.lexists(path):
        return path
    original = os.fsdecode(urllib.parse.unquote_to_bytes(path))
    return original if os.path.lexists(original) else path


def is_utf8(path: str) -> bool:
    """Whether a local path can be handed by name to decoders that want UTF-8 (decord)."""
    return not _ESCAPED_BYTE.search(path)


def local_path(uri: str) -> str | None:
    """The filesystem path of a local URI, else None.

    A path that :func:`escape_undecodable` made a valid string comes back with its original
    bytes (as Python's surrogate escapes); some decoders cannot open such a path by name
    (see :func:`is_utf8`).
    """
    fs, path = url_to_fs(uri)
    return _unescape_local(path) if filesystem_protocol(fs) in LOCAL_PROTOCOLS else None


def open_input(uri: str, storage_options: dict[str, Any] | None = None, **open_kwargs: Any) -> Any:
    """An fsspec file object for reading ``uri`` (``open_kwargs`` such as ``block_size``)."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if filesystem_protocol(fs) in LOCAL_PROTOCOLS:
        path = _unescape_local(fs._strip_protocol(path))
    return fs.open(path, "rb", **open_kwargs)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: everything I/O-ish except a missing object or denied access."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def with_retries(read: Callable[[], T], what: str, attempts: int = READ_ATTEMPTS, backoff_s: float = READ_BACKOFF_S) -> T:
    """Call ``read``, retrying transient storage errors (:func:`is_transient`) with backoff and jitter."""

    def warn(exc: BaseException, retry_number: int, delay_s: float) -> None:
        log.warning("reading %s failed (%s); retry %d/%d in %.1f s", what, exc, retry_number, attempts - 1, delay_s)

    return retry(read, attempts=attempts, backoff_s=backoff_s, retryable=is_transient, on_retry=warn)
