"""List a corpus in object storage and identify each video.

A video's identity is its normalised URI (which gives a deterministic ``video_id``)
plus the object's size and etag or mtime (which tell whether it changed).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fsspec.core import url_to_fs

from pipeline.config import SourceConfig
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

#: Namespace of ``video_id`` = uuid5(namespace, normalised uri).
VIDEO_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-4a51-9b7e-3c1f0d6a9e21")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class VideoObject:
    """One listed video object."""

    uri: str
    size_bytes: int
    etag: str | None
    mtime: dt.datetime | None

    @property
    def video_id(self) -> str:
        return video_id_for(self.uri)

    def to_row(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "uri": self.uri,
            "location": self.uri,
            "size_bytes": self.size_bytes,
            "etag": self.etag,
            "mtime": self.mtime,
        }


def normalise_uri(uri: str) -> str:
    """Canonical form of a URI: explicit protocol; local paths absolute and normalised.

    Object-store keys are kept as they are (``a//b`` and ``a/b`` are different keys there),
    but for a trailing slash.
    """
    fs, path = url_to_fs(uri)
    if _protocol(fs) in LOCAL_PROTOCOLS:
        return "file://" + os.path.normpath(fs._strip_protocol(path))
    return fs.unstrip_protocol(path.rstrip("/"))


def video_id_for(uri: str) -> str:
    """Deterministic id of a video: re-runs and re-listings give the same id."""
    return str(uuid.uuid5(VIDEO_NAMESPACE, normalise_uri(uri)))


def _mtime(info: dict[str, Any]) -> dt.datetime | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, (int, float)):
            return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None


def _etag(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash", "generation"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return None


def list_videos(source: str, config: SourceConfig, storage_options: dict[str, Any] | None = None) -> list[VideoObject]:
    """Every video object under ``source`` (a folder, a single file or a glob), sorted by URI.

    Raises ConfigError when the source does not exist, so a typo fails on the driver.
    """
    try:
        fs, path = url_to_fs(source, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"cannot open source {source!r}: {exc}") from exc
    extensions = tuple(e.lower() for e in config.extensions)
    try:
        if _GLOB_CHARS & set(path):
            infos = fs.glob(path, detail=True)
        elif fs.isfile(path):
            infos = {path: fs.info(path)}
        elif fs.isdir(path):
            infos = fs.glob(path.rstrip("/") + "/" + config.pattern, detail=True)
        else:
            raise ConfigError(f"source {source!r} does not exist (no such file, folder or prefix)")
    except PermissionError as exc:
        raise ConfigError(f"access to source {source!r} denied: {exc}; check the credentials") from exc
    except OSError as exc:  # s3fs/gcsfs map connection and service errors to OSError
        raise ConfigError(f"cannot list source {source!r}: {exc}") from exc
    videos = []
    for name, info in infos.items():
        if info.get("type") == "directory" or not name.lower().endswith(extensions):
            continue
        videos.append(
            VideoObject(
                uri=normalise_uri(fs.unstrip_protocol(name)),
                size_bytes=int(info.get("size") or 0),
                etag=_etag(info),
                mtime=_mtime(info),
            )
        )
    return sorted(videos, key=lambda v: v.uri)


def open_input(uri: str, storage_options: dict[str, Any] | None = None, **open_kwargs: Any) -> Any:
    """An fsspec file object for reading ``uri`` (``open_kwargs`` such as ``block_size``)."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    return fs.open(path, "rb", **open_kwargs)


#: Attempts at reading an object when the store fails transiently (timeouts, 5xx, resets).
READ_ATTEMPTS = 4
READ_BACKOFF_S = 0.5

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: everything I/O-ish except a missing object or denied access."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def with_retries(read: Callable[[], T], what: str, attempts: int = READ_ATTEMPTS, backoff_s: float = READ_BACKOFF_S) -> T:
    """Call ``read``, retrying transient storage errors with exponential backoff and jitter."""
    for attempt in range(attempts):
        try:
            return read()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            delay = backoff_s * 2**attempt * (1 + random.random())
            log.warning("reading %s failed (%s); retry %d/%d in %.1f s", what, exc, attempt + 1, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


#: Filesystems that live inside one process: Ray workers cannot see their objects.
PROCESS_LOCAL_PROTOCOLS = ("memory",)
LOCAL_PROTOCOLS = ("file", "local")


def _protocol(fs: Any) -> str:
    """A filesystem's main protocol name (fsspec gives a string or a tuple of aliases)."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def protocol_of(uri: str) -> str:
    fs, _ = url_to_fs(uri)
    return _protocol(fs)


def local_path(uri: str) -> str | None:
    """The filesystem path of a local URI, else None."""
    fs, path = url_to_fs(uri)
    return path if _protocol(fs) in LOCAL_PROTOCOLS else None
