"""Sources and index in S3: a real S3 API server on 127.0.0.1 (moto), no mocks of the client."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipeline.config import config_from_dict
from pipeline.errors import ConfigError
from pipeline.index.store import Index
from pipeline.index.query import run_query
from pipeline.execution.runner import run_index
from pipeline.sources.storage import delta_options
from testkit import synthetic
from testkit.s3 import S3_SECRET


def test_index_a_bucket_into_a_bucket(ray_local, s3, s3_endpoint: str, mixed_clip, tmp_path: Path,  # type: ignore[no-untyped-def]
                                      caplog: pytest.LogCaptureFixture) -> None:
    s3.mkdir("vindex-src")
    s3.mkdir("vindex-idx")
    s3.put(str(mixed_clip[0]), "vindex-src/videos/a/mixed.mp4")
    cuts = tmp_path / "cuts.mp4"
    cuts_truth = synthetic.write_clip(cuts, synthetic.simple_spec([40, 45], "cut", contents=[8, 9], seed=2))
    s3.put(str(cuts), "vindex-src/videos/cuts.mp4")
    s3.pipe("vindex-src/videos/broken.mp4", b"\x00" * 5000)
    s3.pipe("vindex-src/other/ignored.mp4", b"")

    config = config_from_dict({"storage": {"endpoint_url": s3_endpoint}})
    with caplog.at_level(logging.INFO):
        summary = run_index("s3://vindex-src/videos", "s3://vindex-idx/index", config, show_progress=False)
    assert (summary.counts["listed"], summary.counts["ok"], summary.counts["failed"]) == (3, 2, 1)

    index = Index("s3://vindex-idx/index", delta_options("s3://vindex-idx/index", config.storage))
    videos = {v["uri"]: v for v in index.read("videos").to_pylist()}
    assert set(videos) == {
        "s3://vindex-src/videos/a/mixed.mp4", "s3://vindex-src/videos/cuts.mp4", "s3://vindex-src/videos/broken.mp4"
    }
    assert videos["s3://vindex-src/videos/broken.mp4"]["error_stage"] == "probe"
    assert all(v["etag"] for v in videos.values())  # S3 identity is the etag
    cuts_row = videos["s3://vindex-src/videos/cuts.mp4"]
    assert (cuts_row["num_frames"], cuts_row["num_shots"]) == (cuts_truth.num_frames, 2)
    counted = run_query(index, "select count(*) as n from shots where video_id = '%s'" % cuts_row["video_id"])
    assert counted.to_pylist() == [{"n": 2}]

    # Credentials come from the environment only: never in the runs table or the logs.
    run = index.read("runs").to_pylist()[0]
    assert S3_SECRET not in run["config"] + run["versions"]
    assert s3_endpoint in run["config"]
    assert S3_SECRET not in caplog.text

    again = run_index("s3://vindex-src/videos", "s3://vindex-idx/index", config, show_progress=False)
    assert (again.counts["unchanged"], again.counts["changed"]) == (2, 1)


def test_missing_bucket_and_unreachable_index_fail_fast(s3, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    config = config_from_dict({"storage": {"endpoint_url": s3_endpoint}})
    with pytest.raises(ConfigError, match="does not exist|cannot list"):
        run_index("s3://no-such-bucket-here/videos", "s3://vindex-idx2/index", config, show_progress=False)
    s3.mkdir("vindex-src2")
    s3.pipe("vindex-src2/v/x.mp4", b"x")
    with pytest.raises(ConfigError, match="index 's3://missing-index-bucket/index' is not usable"):
        run_index("s3://vindex-src2/v", "s3://missing-index-bucket/index", config, show_progress=False)


#: Names that must index like any other, in a folder and as S3 keys.
ODD_NAMES = ["with space.mp4", "a#b.mp4", "a?b.mp4", "100%.mp4", "café.mp4"]


def test_odd_names_and_keys_index_like_any_other(ray_local, s3, s3_endpoint: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = tmp_path / "clip.mp4"
    synthetic.write_clip(clip, synthetic.simple_spec([20, 20], "cut", contents=[1, 2], width=64, height=48, seed=7))
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ODD_NAMES:
        (folder / name).write_bytes(clip.read_bytes())
    not_utf8 = os.fsencode(str(folder)) + b"/caf\xe9.mp4"  # a Latin-1 name on a UTF-8 system
    with open(not_utf8, "wb") as f:
        f.write(clip.read_bytes())
    s3.mkdir("vindex-odd")
    for name in ODD_NAMES:
        s3.put(str(clip), f"vindex-odd/v/{name}")

    config = config_from_dict({"storage": {"endpoint_url": s3_endpoint}})
    index_uri = str(tmp_path / "index")
    local = run_index(str(folder), index_uri, config, show_progress=False)
    remote = run_index("s3://vindex-odd/v", index_uri, config, show_progress=False)
    assert (local.counts["listed"], local.counts["ok"]) == (6, 6)
    assert (remote.counts["listed"], remote.counts["ok"], remote.counts["deleted"]) == (5, 5, 0)

    videos = Index(index_uri).read("videos").to_pylist()
    assert sorted(v["uri"] for v in videos) == sorted(
        [f"file://{folder}/{n}" for n in ODD_NAMES] + [f"file://{folder}/caf%E9.mp4"]
        + [f"s3://vindex-odd/v/{n}" for n in ODD_NAMES]
    )
    # Decoded by the fast path (no fallback warning) and identical to each other.
    assert all(v["status"] == "ok" and v["warnings"] is None and v["num_shots"] == 2 for v in videos), videos
    again = run_index(str(folder), index_uri, config, show_progress=False)
    assert (again.counts["unchanged"], again.counts["new"], again.counts["deleted"]) == (6, 0, 0)


def _pages_asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The ListObjectsV2 requests s3fs sends from now on."""
    import s3fs

    asked: list[dict[str, object]] = []
    real = s3fs.S3FileSystem.call_s3

    def recording(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        if method == "list_objects_v2":
            asked.append(kwargs)
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", recording)
    return asked


@pytest.mark.parametrize("pattern", ["**", "*", "*.mp4", "d0/*", "d0/**", "**/*.mov", "*/deeper/*", "d[01]/x1*"])
def test_a_bucket_is_listed_a_page_at_a_time_as_its_glob_would_list_it(  # type: ignore[no-untyped-def]
    s3, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    import pipeline.sources.listing as listing_module
    from pipeline.config import SourceConfig

    bucket = "vindex-pages"
    s3.mkdir(bucket)
    names = [f"v/d{i % 3}/x{i}.mp4" for i in range(14)]
    names += ["v/top.mp4", "v/top.mov", "v/notes.txt", "v/d0/deeper/y.mp4", "v/d1/deeper/z.mov", "w/elsewhere.mp4"]
    for name in names:
        s3.pipe(f"{bucket}/{name}", b"x")
    config = SourceConfig(pattern=pattern)
    expected = sorted(
        "s3://" + name for name, info in s3.glob(f"{bucket}/v/{pattern}", detail=True).items()
        if info["type"] != "directory" and name.lower().endswith(config.extensions)
    )  # fmt: skip
    assert expected  # each pattern matches something here

    monkeypatch.setattr(listing_module, "S3_PAGE_KEYS", 4)
    asked = _pages_asked(monkeypatch)
    listing = listing_module.list_source(f"s3://{bucket}/v", config, {"endpoint_url": s3_endpoint})
    assert [v.uri for v in listing.videos] == expected
    assert all(v.etag and v.mtime and v.size_bytes == 1 for v in listing.videos)
    assert all(request["MaxKeys"] == 4 and request["Prefix"] == "v/" for request in asked)
    if "/" in pattern or "**" in pattern:  # the whole prefix: 19 keys, 5 pages of 4
        assert len(asked) == 5
    else:  # one folder only: 3 keys and 3 subfolders, 2 pages of 4
        assert all(request["Delimiter"] == "/" for request in asked) and len(asked) == 2


def test_a_glob_source_in_a_bucket_is_listed_a_page_at_a_time(s3, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import pipeline.sources.listing as listing_module
    from pipeline.config import SourceConfig

    s3.mkdir("vindex-glob")
    for i in range(9):
        s3.pipe(f"vindex-glob/v/a{i}/clip.mp4", b"x")
    s3.pipe("vindex-glob/v/b0/clip.mp4", b"x")
    monkeypatch.setattr(listing_module, "S3_PAGE_KEYS", 3)
    asked = _pages_asked(monkeypatch)
    listing = listing_module.list_source("s3://vindex-glob/v/a*/*.mp4", SourceConfig(), {"endpoint_url": s3_endpoint})
    assert [v.uri for v in listing.videos] == [f"s3://vindex-glob/v/a{i}/clip.mp4" for i in range(9)]
    assert len(asked) == 4  # 10 keys under v/, 3 a page


def test_a_second_listing_in_one_process_does_not_list_an_object_deleted_since(s3, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """s3fs keeps folder listings in a cache of the filesystem object, which fsspec shares
    within a process: a listing read from it would list what was deleted since."""
    import s3fs
    from fsspec.core import url_to_fs

    from pipeline.config import SourceConfig
    from pipeline.sources.listing import list_source

    s3.mkdir("vindex-stale")
    for name in ("a", "b"):
        s3.pipe(f"vindex-stale/v/{name}.mp4", b"x")
    options = {"endpoint_url": s3_endpoint}
    first = list_source("s3://vindex-stale/v", SourceConfig(), options)
    assert [v.uri for v in first.videos] == ["s3://vindex-stale/v/a.mp4", "s3://vindex-stale/v/b.mp4"]
    fs, _ = url_to_fs("s3://vindex-stale/v", **options)
    list(fs.walk("vindex-stale/v"))  # something in the process lists the folder: cached
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True).rm("vindex-stale/v/b.mp4")
    assert "vindex-stale/v/b.mp4" in fs.find("vindex-stale/v", maxdepth=1)  # the cache is stale
    again = list_source("s3://vindex-stale/v", SourceConfig(), options)
    assert [v.uri for v in again.videos] == ["s3://vindex-stale/v/a.mp4"]
