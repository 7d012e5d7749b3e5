"""List a corpus in object storage and identify each video.

A video's identity is its normalised URI (which gives a deterministic ``video_id``)
plus the object's size and etag or mtime (which tell whether it changed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
from fsspec.core import url_to_fs
from fsspec.utils import glob_translate

from pipeline.config import SourceConfig
from pipeline.errors import ConfigError
from pipeline.redaction import has_userinfo, strip_userinfo
from pipeline.sources.reading import LOCAL_PROTOCOLS, escape_undecodable, filesystem_protocol
from pipeline.sources.spill import Spill

log = logging.getLogger(__name__)

#: Namespace of ``video_id`` = uuid5(namespace, normalised uri).
VIDEO_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-4a51-9b7e-3c1f0d6a9e21")
_GLOB_CHARS = set("*?[")
#: What a run keeps of each listed video (``location`` null where it is the ``uri``): about
#: 150 bytes a video in Arrow, against 450 as a :class:`VideoObject`.
LISTED = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("location", pa.string()),
        ("size_bytes", pa.int64()),
        ("etag", pa.string()),
        ("mtime", pa.timestamp("us", tz="UTC")),
    ]
)
#: Videos per batch of a streamed listing.
LISTING_BATCH_ROWS = 16_384
#: Keys asked for per page of an S3 listing (S3 answers 1,000 at most).
S3_PAGE_KEYS = 1000
#: fsspec protocol names of S3 (listed a page at a time by :func:`_s3_pages`).
S3_PROTOCOLS = ("s3", "s3a")


@dataclass(frozen=True)
class VideoObject:
    """One listed video object."""

    uri: str
    size_bytes: int
    etag: str | None
    mtime: dt.datetime | None
    #: Where to read it from, when that differs from ``uri``: the URL with the credentials typed
    #: into it, kept in memory only (never stored, logged or printed; see pipeline.redaction).
    location: str | None = field(default=None, repr=False, compare=False)

    @cached_property
    def video_id(self) -> str:
        # Cached: normalising a URI opens its filesystem (url_to_fs), about 100 us a call, and a
        # run reads every listed video's id several times (a million-object listing's diff spent
        # 150 s in it).
        return video_id_for(self.uri)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "VideoObject":
        """The video of a :data:`LISTED` row (its id kept: the row's URI is normalised)."""
        video = cls(row["uri"], row["size_bytes"], row["etag"], row["mtime"], row["location"])
        video.__dict__["video_id"] = row["video_id"]
        return video

    def to_row(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "uri": self.uri,
            "location": self.location or self.uri,
            "size_bytes": self.size_bytes,
            "etag": self.etag,
            "mtime": self.mtime,
        }


def normalise_uri(uri: str) -> str:
    """Canonical form of a URI: explicit protocol; local paths absolute and normalised.

    Object-store keys are kept as they are (``a//b`` and ``a/b`` are different keys there),
    but for a trailing slash. A local name that is not valid UTF-8 (Linux file names are
    bytes) is made a valid string by :func:`escape_undecodable`, reversibly. Credentials typed
    into a URL (``user:password@``) are not part of it.
    """
    return _normalised(*url_to_fs(uri))


def _normalised(fs: Any, path: str) -> str:
    """:func:`normalise_uri` of ``path`` on ``fs``, for a caller that has opened the filesystem."""
    if filesystem_protocol(fs) in LOCAL_PROTOCOLS:
        return "file://" + escape_undecodable(os.path.normpath(fs._strip_protocol(path)))
    return strip_userinfo(fs.unstrip_protocol(path.rstrip("/")))


def video_id_for(uri: str) -> str:
    """Deterministic id of a video: re-runs and re-listings give the same id."""
    return _id_of_normalised(normalise_uri(uri))


def _id_of_normalised(uri: str) -> str:
    return str(uuid.uuid5(VIDEO_NAMESPACE, uri))


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


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a listing: the videos whose id falls in it.

    ``N`` runs with shards ``0/N`` ... ``N-1/N`` split one listing into disjoint parts by
    ``video_id`` (uniform: ids are uuid5 hashes), so they can index one source into one
    index at once; each marks deleted only the videos of its own part.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``K/N`` with ``0 <= K < N``; ConfigError otherwise."""
        head, sep, tail = text.partition("/")
        try:
            shard = cls(int(head), int(tail)) if sep else None
        except ValueError:
            shard = None
        if shard is None or not 0 <= shard.index < shard.count:
            raise ConfigError(f"--shard expects K/N with 0 <= K < N (e.g. 0/4 ... 3/4), got {text!r}")
        return shard

    def owns(self, video_id: str) -> bool:
        return uuid.UUID(video_id).int % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class ListingScope:
    """Every URI one listing would have listed had the object existed.

    A run may mark a video deleted only if this scope covers its URI: the same file, or the
    same folder at a path-segment boundary with the same glob, and the same extensions.
    ``protocol`` is the URI's ``scheme://`` and ``glob`` a glob over the rest (fsspec's
    semantics: ``*`` stays within a folder, ``**`` crosses folders).
    """

    protocol: str
    glob: str
    extensions: tuple[str, ...]
    #: The part of the listing this run took; None: all of it.
    shard: Shard | None = None

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(glob_translate(self.glob))

    def covers(self, uri: str) -> bool:
        if not uri.startswith(self.protocol) or not uri.lower().endswith(self.extensions):
            return False
        return self._pattern.fullmatch(uri[len(self.protocol) :]) is not None

    def owns(self, video_id: str) -> bool:
        """Whether this listing's shard (if any) holds ``video_id``: deletion is for owned videos only."""
        return self.shard is None or self.shard.owns(video_id)


@dataclass(frozen=True)
class Listing:
    """The videos a source holds now, and what the listing covered."""

    videos: list[VideoObject]
    scope: ListingScope


@dataclass
class ListingStream:
    """A listing read as it is made: its scope, and its videos as :data:`LISTED` batches in the
    order the source gives them (read once), held nowhere whole."""

    scope: ListingScope
    batches: Iterator[pa.RecordBatch]

    def spill(self, folder: str | None) -> Spill:
        """Every batch, into a :class:`~pipeline.sources.spill.Spill` in ``folder`` (on disk
        past its memory bound; never when ``folder`` is None)."""
        spill = Spill(LISTED, folder, "listed")
        for batch in self.batches:
            spill.append(batch)
        return spill.close()


def _walk_matching(fs: Any, root: str, glob: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The files under ``root`` whose paths match ``glob`` (fsspec's glob semantics), with their
    info, a folder at a time: ``fs.glob`` gathers every object's info before it returns (about
    700 MB for a million local files), while the listing keeps only what it needs of each."""
    pattern = re.compile(glob_translate(glob))
    relative = glob[len(root) + 1 :]
    depth = None if "**" in relative else relative.count("/") + 1
    for _, _, files in fs.walk(root, maxdepth=depth, detail=True):
        for info in files.values():
            name = info["name"]
            if info.get("type") != "directory" and pattern.match(name):
                yield name, info


def _s3_pages(fs: Any, root: str, glob: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects under ``root`` (``bucket[/prefix]``) whose keys match ``glob``, with their
    info, listed a page of :data:`S3_PAGE_KEYS` at a time with S3's own paging.

    Not through s3fs's walk or glob: its walk answers from its listing cache (a second run in
    one process listed an object deleted since) and its glob holds every object's info until
    it returns. Each page is one ``ListObjectsV2`` request, retried by s3fs like any other;
    nothing is cached. A pattern that stays in one folder asks for that folder only.
    """
    pattern = re.compile(glob_translate(glob))
    bucket, _, key = root.partition("/")
    relative = glob[len(root) + 1 :]
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": key + "/" if key else "", "MaxKeys": S3_PAGE_KEYS}
    if "/" not in relative and "**" not in relative:
        request["Delimiter"] = "/"
    while True:
        page = fs.call_s3("list_objects_v2", **request)
        for info in page.get("Contents", []):
            name = bucket + "/" + info["Key"]
            if not info["Key"].endswith("/") and pattern.match(name):
                yield name, {**info, "size": info.get("Size")}
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        request["ContinuationToken"] = token


def _glob_root(glob: str) -> str:
    """The folder a glob starts in: its fixed part up to the last ``/`` before a glob character."""
    fixed = glob[: min((glob.index(c) for c in _GLOB_CHARS if c in glob), default=len(glob))]
    return fixed.rpartition("/")[0]


def _matching(fs: Any, root: str, glob: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """The objects that ``glob`` (whose fixed folder is ``root``) matches, with their info, as
    the filesystem can give them without holding them all: local folders a folder at a time,
    S3 a page at a time. Other object stores (gcsfs answers a walk from its listing cache too)
    are globbed whole: their infos are held until the glob returns."""
    protocol = filesystem_protocol(fs)
    if root and root != "/" and protocol in LOCAL_PROTOCOLS:
        return _walk_matching(fs, root, glob)
    if root and protocol in S3_PROTOCOLS and hasattr(fs, "call_s3"):
        return _s3_pages(fs, root, glob)
    found: dict[str, dict[str, Any]] = fs.glob(glob, detail=True)
    return found.items()


def _scope(fs: Any, glob: str, extensions: tuple[str, ...]) -> ListingScope:
    """The scope of a listing of ``glob`` (a path of ``fs``), in the form normalised URIs take."""
    uri = normalise_uri(fs.unstrip_protocol(glob))
    protocol, _, rest = uri.partition("://")
    # glob_translate wants the pattern's own special characters only: the fixed part of a
    # normalised path may hold regex characters, which it escapes itself.
    return ListingScope(protocol + "://", rest, extensions)


def list_videos(source: str, config: SourceConfig, storage_options: dict[str, Any] | None = None) -> list[VideoObject]:
    """Every video object under ``source`` (a folder, a single file or a glob), sorted by URI."""
    return list_source(source, config, storage_options).videos


def list_source(
    source: str, config: SourceConfig, storage_options: dict[str, Any] | None = None, shard: Shard | None = None
) -> Listing:
    """List ``source`` (a folder, a single file or a glob): its videos (of ``shard`` only, when
    given), sorted by URI, and the listing's scope. Held whole: a run streams the listing
    instead (:func:`stream_source`).

    Raises ConfigError when the source does not exist, so a typo fails on the driver.
    """
    stream = stream_source(source, config, storage_options, shard)
    videos: dict[str, VideoObject] = {}
    for batch in stream.batches:
        for row in batch.to_pylist():
            if row["uri"] in videos:  # e.g. a literal 'caf%E9.mp4' beside the undecodable b'caf\xe9.mp4'
                log.warning("two objects have the same URI %s; indexing one of them", row["uri"])
                continue
            videos[row["uri"]] = VideoObject.from_row(row)
    return Listing(sorted(videos.values(), key=lambda v: v.uri), stream.scope)


def stream_source(
    source: str, config: SourceConfig, storage_options: dict[str, Any] | None = None, shard: Shard | None = None
) -> ListingStream:
    """List ``source`` (a folder, a single file or a glob) as it is read: its videos (of
    ``shard`` only, when given) in :data:`LISTED` batches, in the source's order, and the
    listing's scope. Two objects may have one URI (a name that is not UTF-8 beside its escaped
    form): the diff keeps one of them.

    Raises ConfigError when the source does not exist (here, so a typo fails on the driver), or
    when listing it fails (while the batches are read).
    """
    try:
        fs, path = url_to_fs(source, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"cannot open source {source!r}: {exc}") from exc
    extensions = tuple(e.lower() for e in config.extensions)
    infos: Iterable[tuple[str, dict[str, Any]]]
    with _listing_errors(source):
        if _GLOB_CHARS & set(path):
            glob = path
            infos = _matching(fs, _glob_root(path), path)
        elif fs.isfile(path):
            glob = path
            infos = [(path, fs.info(path))]
        elif fs.isdir(path):
            glob = path.rstrip("/") + "/" + config.pattern
            infos = _matching(fs, path.rstrip("/"), glob)
        else:
            raise ConfigError(f"source {source!r} does not exist (no such file, folder or prefix)")
        scope = dataclasses.replace(_scope(fs, glob, extensions), shard=shard)
    return ListingStream(scope, _batches(source, fs, infos, scope))


@contextlib.contextmanager
def _listing_errors(source: str) -> Iterator[None]:
    """Storage errors while listing ``source``, as ConfigErrors that say what to check."""
    try:
        yield
    except PermissionError as exc:
        raise ConfigError(f"access to source {source!r} denied: {exc}; check the credentials") from exc
    except OSError as exc:  # s3fs/gcsfs map connection and service errors to OSError
        raise ConfigError(f"cannot list source {source!r}: {exc}") from exc


def _batches(
    source: str, fs: Any, infos: Iterable[tuple[str, dict[str, Any]]], scope: ListingScope
) -> Iterator[pa.RecordBatch]:
    """The listed objects that are videos of ``scope``'s shard, as :data:`LISTED` batches."""
    columns: dict[str, list[Any]] = {name: [] for name in LISTED.names}
    with _listing_errors(source):
        for name, info in infos:
            if info.get("type") == "directory" or not name.lower().endswith(scope.extensions):
                continue
            uri = _normalised(fs, name)
            video_id = _id_of_normalised(uri)
            if not scope.owns(video_id):
                continue
            full = fs.unstrip_protocol(name)
            columns["video_id"].append(video_id)
            columns["uri"].append(uri)
            columns["location"].append(full if has_userinfo(full) else None)
            columns["size_bytes"].append(int(info.get("size") or 0))
            columns["etag"].append(_etag(info))
            columns["mtime"].append(_mtime(info))
            if len(columns["uri"]) >= LISTING_BATCH_ROWS:
                yield pa.RecordBatch.from_pydict(columns, schema=LISTED)
                columns = {name: [] for name in LISTED.names}
    if columns["uri"]:
        yield pa.RecordBatch.from_pydict(columns, schema=LISTED)
