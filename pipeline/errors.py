"""Exceptions raised by vindex.

Hierarchy::

    VindexError                      base of everything vindex raises on purpose
    ├── ConfigError                  bad configuration; raised on the driver before any work
    │   └── EmptySourceError         the source lists no video where the index holds some
    ├── IndexError_                  the index location cannot be opened or read
    │   └── IndexWriteError          writing to the index failed (disk full, read-only, denied,
    │                                commits that keep conflicting): exit status 3
    ├── ClusterError                 a Ray cluster's job server refused a request (e.g. no such job)
    │   └── ClusterUnreachableError  nothing answered at the job server's address: exit status 3
    └── VideoError                   one video could not be processed; carries uri and stage
        ├── ProbeError               container/stream metadata unreadable, or no video stream
        ├── DecodeError              frames could not be decoded
        └── ModelError               inference failed on this video's frames

A ``VideoError`` never stops a run: it becomes the video's ``failed`` status row,
with ``stage`` and ``str(error)`` as ``error_stage`` and ``error_message``.
Third-party exceptions are mapped to these types with ``raise ... from exc``.
"""

from __future__ import annotations


class VindexError(Exception):
    """Base class of every error vindex raises deliberately."""


class ConfigError(VindexError):
    """The configuration is invalid; the message names the key and the fix."""


class EmptySourceError(ConfigError):
    """A listing found no video where the index holds videos it covers; nothing was deleted."""


class IndexError_(VindexError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """The index location cannot be opened, read or committed to."""


class IndexWriteError(IndexError_):
    """Writing to the index failed midway (disk full, read-only, access denied, or commits that
    keep conflicting with other runs'). What was committed before stays; the next run resumes."""


class ClusterError(VindexError):
    """The Ray cluster's job server (its dashboard address) cannot be reached or refused a request."""


class ClusterUnreachableError(ClusterError):
    """Nothing answered at the Ray job server's address (down, wrong address, network)."""


class VideoError(VindexError):
    """Processing one video failed at ``stage``; the run goes on without it."""

    stage: str = "unknown"

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.uri, self.message))


class ProbeError(VideoError):
    stage = "probe"


class DecodeError(VideoError):
    stage = "decode"


class ModelError(VideoError):
    stage = "model"


__all__ = [
    "ClusterError",
    "ClusterUnreachableError",
    "ConfigError",
    "DecodeError",
    "EmptySourceError",
    "IndexError_",
    "IndexWriteError",
    "ModelError",
    "ProbeError",
    "VideoError",
    "VindexError",
]
