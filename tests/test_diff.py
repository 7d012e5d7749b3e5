"""Deciding what a run must (re)index, without Ray."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

import pytest

from pipeline.config import SourceConfig
from pipeline.errors import EmptySourceError
from pipeline.digests import OUTPUTS_VERSION, Digests, index_digest
from pipeline.index.diff import diff_against_index
from pipeline.sources.listing import ListingScope, VideoObject, list_source

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
EXTENSIONS = SourceConfig().extensions
#: The run's digests: outputs "d", derived "s"; and another run's outputs "new".
D = Digests("d", "s")


def folder(uri: str) -> ListingScope:
    """The scope of listing a whole folder with the default settings."""
    protocol, _, rest = uri.partition("://")
    return ListingScope(protocol + "://", rest + "/**", EXTENSIONS)


def known(video: VideoObject, status: str = "ok", digest: str = "d", **changes: object) -> dict[str, object]:
    row = {"video_id": video.video_id, "uri": video.uri, "size_bytes": video.size_bytes, "etag": video.etag,
           "mtime": video.mtime, "status": status, "config_digest": digest, "derived_digest": "s"}
    row.update(changes)
    return row


def test_classifies_new_changed_unchanged_failed_and_deleted() -> None:
    same = VideoObject("s3://b/v/same.mp4", 10, "e1", None)
    resized = VideoObject("s3://b/v/resized.mp4", 11, "e2", None)
    retagged = VideoObject("s3://b/v/retagged.mp4", 10, "new", None)
    touched = VideoObject("file:///v/touched.mp4", 10, None, T1)
    failed = VideoObject("s3://b/v/failed.mp4", 10, "e3", None)
    fresh = VideoObject("s3://b/v/fresh.mp4", 10, "e4", None)
    gone = VideoObject("s3://b/v/gone.mp4", 10, "e5", None)
    elsewhere = VideoObject("s3://b/other/x.mp4", 10, "e6", None)
    rows = [
        known(same), known(resized, size_bytes=10), known(retagged, etag="old"), known(touched, mtime=T0),
        known(failed, status="failed"), known(gone), known(elsewhere),
    ]
    plan = diff_against_index([same, resized, retagged, touched, failed, fresh], rows, folder("s3://b/v"), D, full=False)
    # In URI order, whatever order the listing came in.
    assert [v.uri for v in plan.todo] == [touched.uri, failed.uri, fresh.uri, resized.uri, retagged.uri]
    assert {k: plan.counts[k] for k in ("listed", "new", "changed", "unchanged", "deleted")} == {
        "listed": 6, "new": 1, "changed": 4, "unchanged": 1, "deleted": 1
    }
    # Only videos under the source's prefix can vanish from it.
    assert [r["uri"] for r in plan.deleted] == [gone.uri]


def test_new_settings_or_full_reindex_everything() -> None:
    video = VideoObject("s3://b/v/a.mp4", 10, "e", None)
    assert len(diff_against_index([video], [known(video, digest="old")], folder("s3://b/v"), Digests("new", "s"), full=False).todo) == 1
    assert len(diff_against_index([video], [known(video)], folder("s3://b/v"), D, full=True).todo) == 1
    assert diff_against_index([video], [known(video)], folder("s3://b/v"), D, full=False).todo == []


def test_a_deleted_video_that_returns_is_new_again() -> None:
    video = VideoObject("s3://b/v/a.mp4", 10, "e", None)
    plan = diff_against_index([video], [known(video, status="deleted")], folder("s3://b/v"), D, full=False)
    assert plan.counts["new"] == 1 and plan.todo == [video]


def _indexed(paths: list[str]) -> list[dict[str, object]]:
    return [known(VideoObject("file://" + p, 10, None, T0)) for p in paths]


def test_a_sibling_folder_sharing_a_prefix_is_not_deleted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    index = _indexed([f"{tmp_path}/videos/a.mp4", f"{tmp_path}/videos2/b.mp4", f"{tmp_path}/videos/gone.mp4"])
    listing = list_source(str(tmp_path / "videos"), SourceConfig())
    plan = diff_against_index(listing.videos, index, listing.scope, D, full=False)
    assert [r["uri"] for r in plan.deleted] == [f"file://{tmp_path}/videos/gone.mp4"]


def test_a_glob_deletes_only_what_it_covers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.mp4").write_bytes(b"x")
    index = _indexed(
        [f"{tmp_path}/a.mp4", f"{tmp_path}/gone.mp4", f"{tmp_path}/b.webm", f"{tmp_path}/sub/c.mp4", f"{tmp_path}/c.mp4.txt"]
    )
    listing = list_source(f"{tmp_path}/*.mp4", SourceConfig())
    plan = diff_against_index(listing.videos, index, listing.scope, D, full=False)
    assert [r["uri"] for r in plan.deleted] == [f"file://{tmp_path}/gone.mp4"]


def test_changed_extensions_delete_nothing_they_no_longer_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.webm").write_bytes(b"x")
    index = _indexed([f"{tmp_path}/a.mp4", f"{tmp_path}/b.webm"])
    listing = list_source(str(tmp_path), SourceConfig(extensions=(".mp4",)))
    plan = diff_against_index(listing.videos, index, listing.scope, D, full=False)
    assert plan.deleted == []


def test_a_single_file_source_covers_that_file_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.mp4").write_bytes(b"x")
    index = _indexed([f"{tmp_path}/a.mp4", f"{tmp_path}/a.mp4.bak.mp4", f"{tmp_path}/b.mp4"])
    listing = list_source(str(tmp_path / "a.mp4"), SourceConfig())
    assert diff_against_index(listing.videos, index, listing.scope, D, full=False).deleted == []


def test_an_empty_listing_deletes_nothing_unless_allowed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mnt").mkdir()  # an unmounted mount point: the folder exists, empty
    index = _indexed([f"{tmp_path}/mnt/a.mp4", f"{tmp_path}/mnt/b.mp4"])
    listing = list_source(str(tmp_path / "mnt"), SourceConfig())
    with pytest.raises(EmptySourceError, match="--allow-empty-source"):
        diff_against_index(listing.videos, index, listing.scope, D, full=False)
    plan = diff_against_index(listing.videos, index, listing.scope, D, full=False, allow_empty_source=True)
    assert len(plan.deleted) == 2
    # An empty listing of a folder the index knows nothing of is just an empty run.
    assert diff_against_index([], _indexed([f"{tmp_path}/other/a.mp4"]), listing.scope, D, full=False).deleted == []


def test_scene_settings_alone_rederive_without_decoding() -> None:
    scenes_changed = VideoObject("s3://b/v/scenes.mp4", 10, "e1", None)
    same = VideoObject("s3://b/v/same.mp4", 10, "e2", None)
    older = VideoObject("s3://b/v/older.mp4", 10, "e3", None)  # written by an older vindex
    rows = [known(scenes_changed, derived_digest="other"), known(same), known(older, digest="v1", derived_digest=None)]
    plan = diff_against_index([scenes_changed, same, older], rows, folder("s3://b/v"), D, full=False)
    assert plan.rederive == [scenes_changed.video_id] and plan.todo == [older]
    assert (plan.counts["changed"], plan.counts["unchanged"]) == (2, 1)
    # --full decodes everything again, scenes-only changes included.
    full = diff_against_index([scenes_changed, same, older], rows, folder("s3://b/v"), D, full=True)
    assert full.rederive == [] and len(full.todo) == 3
    forced = diff_against_index([scenes_changed, same, older], rows, folder("s3://b/v"), D, full=False, rederive_scenes=True)
    assert forced.rederive == [same.video_id, scenes_changed.video_id] and forced.todo == [older]  # URI order


def test_the_outputs_version_and_weights_are_part_of_the_outputs_digest() -> None:
    base = {"vindex": "0.1.0", "outputs": OUTPUTS_VERSION, "transnetv2_weights": "a", "efficientnet_lite0_weights": "b",
            "config": "c", "derived": "s"}
    digest = index_digest(base)
    assert index_digest({**base, "outputs": "older"}) != digest
    assert index_digest({**base, "transnetv2_weights": "z"}) != digest
    # The vindex release alone and the scene settings do not re-decode.
    assert index_digest({**base, "vindex": "0.2.0", "derived": "t"}) == digest


def test_listing_and_diffing_open_the_filesystem_once_not_per_video(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Normalising a URI opens its filesystem (about 100 us): done per video, a million-object
    listing's diff took 150 s. The listing opens the source once; ids are computed once."""
    import pipeline.sources.listing as listing_module

    for i in range(20):
        (tmp_path / f"v{i}.mp4").write_bytes(b"x")
    opened = []
    real = listing_module.url_to_fs

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(listing_module, "url_to_fs", counting)
    listing = list_source(str(tmp_path), SourceConfig())
    ids = [v.video_id for v in listing.videos]
    plan = diff_against_index(listing.videos, [], listing.scope, D, False)
    assert plan.counts["new"] == 20
    assert len(opened) <= 2  # the source and the listing's scope, not each video
    opened.clear()
    assert [v.video_id for v in listing.videos] == ids
    diff_against_index(listing.videos, [known(v) for v in listing.videos], listing.scope, D, False)
    assert opened == []  # ids are not computed again
    monkeypatch.setattr(listing_module, "url_to_fs", real)
    assert sorted(ids) == sorted(listing_module.video_id_for((tmp_path / f"v{i}.mp4").as_uri()) for i in range(20))


@pytest.mark.parametrize("pattern", ["**", "*", "*.mp4", "a/*", "a/**", "**/*.mov", "*/b/*", "a/b/c*.mp4", "[ab]/*"])
def test_a_folder_is_listed_a_folder_at_a_time_as_its_glob_would_list_it(tmp_path, pattern) -> None:  # type: ignore[no-untyped-def]
    """The folder walk that replaced fs.glob (which holds every object's info at once) finds the
    same objects for any pattern."""
    from fsspec.implementations.local import LocalFileSystem

    from pipeline.sources.listing import _walk_matching

    for name in ["x.mp4", "y.mov", "a/x.mp4", "a/b/c1.mp4", "a/b/d.mp4", "b/b/z.mp4", "b/q.mov", "c/d/e/f.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    fs = LocalFileSystem()
    root = str(tmp_path)
    glob = root + "/" + pattern
    expected = {name for name, info in fs.glob(glob, detail=True).items() if info["type"] != "directory"}
    assert expected  # each pattern matches something here
    assert {name for name, _ in _walk_matching(fs, root, glob)} == expected


def test_a_sharded_listing_keeps_only_its_part(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.sources.listing import Shard

    for i in range(40):
        (tmp_path / f"v{i}.mp4").write_bytes(b"x")
    whole = {v.video_id for v in list_source(str(tmp_path), SourceConfig()).videos}
    parts = [{v.video_id for v in list_source(str(tmp_path), SourceConfig(), shard=Shard(k, 3)).videos} for k in range(3)]
    assert set().union(*parts) == whole and sum(map(len, parts)) == 40 and all(parts)


def test_a_refitted_embedding_centre_derives_scenes_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Scenes subtract a fitted centre from the embeddings: new constants change scenes as a
    setting would, so they change the derived digest (and only where the centre is used)."""
    import numpy as np

    import pipeline.algorithms.embedding_centre as centre_module
    from pipeline.config import Config, config_from_dict
    from pipeline.digests import derived_digest

    before = derived_digest(Config())
    uncentred = config_from_dict({"scenes": {"centre_embeddings": False}})
    uncentred_before = derived_digest(uncentred)
    monkeypatch.setattr(centre_module, "EMBEDDING_CENTRE", centre_module.EMBEDDING_CENTRE + np.float32(0.001))
    assert derived_digest(Config()) != before
    assert derived_digest(uncentred) == uncentred_before == uncentred.digest("derived")


def test_refitted_within_scene_directions_derive_scenes_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Scenes shrink fitted within-scene directions: new constants change the derived digest
    where they are used, and only there."""
    import dataclasses

    import pipeline.algorithms.within_scene as within_module
    from pipeline.config import Config, config_from_dict
    from pipeline.digests import derived_digest

    before = derived_digest(Config())
    unshrunk = config_from_dict({"scenes": {"shrink_within_scene": False}})
    unshrunk_before = derived_digest(unshrunk)
    assert unshrunk_before != before
    fitted = within_module.within_scene()
    refitted = dataclasses.replace(fitted, shrink=fitted.shrink * 0.9)
    monkeypatch.setattr(within_module, "within_scene", lambda: refitted)
    assert derived_digest(Config()) != before
    assert derived_digest(unshrunk) == unshrunk_before


def _plan_both_ways(tmp_path, monkeypatch, listed: list[VideoObject], rows: list[dict[str, object]], scope: ListingScope,  # type: ignore[no-untyped-def]
                    **options: object) -> list[tuple[dict[str, int], list[str], list[str], list[str]]]:
    """The plan of ``listed`` against ``rows`` (a Parquet file read as a dataset, as a run reads
    its Delta table), made once by the join in memory and once partition by partition (a
    memory bound of one row, partitions of 2 rows split 2 ways at a time), each checked to be the join used. Each
    part of the plan is given sorted."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    import pipeline.index.diff as diff_module
    from pipeline.sources.listing import LISTED
    from pipeline.sources.spill import Spill

    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    pq.write_table(pa.Table.from_pylist(rows, schema=diff_module.KNOWN), tmp_path / "videos.parquet")
    plans = []
    monkeypatch.setattr(diff_module, "PARTITION_ROWS", 2)
    monkeypatch.setattr(diff_module, "MAX_FANOUT", 2)  # split again, and again
    calls: list[str] = []
    splits: list[str] = options.pop("splits", [])  # type: ignore[assignment]
    for name in ("_joined_by_partition", "_joined_in_range", "_joined_in_memory"):
        def counted(*args: object, _real=getattr(diff_module, name), _name=name) -> object:  # type: ignore[no-untyped-def]
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(diff_module, name, counted)
    for memory_rows in (1000, 1):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        spill = Spill(LISTED, str(work), "listed", memory_rows=memory_rows)
        spill.append(pa.Table.from_pylist([{**v.to_row(), "location": v.location} for v in listed], schema=LISTED))
        calls.clear()
        plan = diff_module.plan_run(
            spill.close(), pads.dataset(tmp_path / "videos.parquet"), scope, D, False, str(work), **options  # type: ignore[arg-type]
        )
        assert spill.on_disk == (memory_rows == 1 and len(listed) > 1)
        parts = [[r["uri"] for r in part.to_pylist()] for part in (plan.todo, plan.rederive, plan.deleted)]
        if memory_rows > 1:  # held whole: in URI order
            assert calls == ["_joined_in_memory"]
            assert all(part == sorted(part) for part in parts)
        else:  # several partitions, each joined in memory
            assert calls[0] == "_joined_by_partition" and calls.count("_joined_in_memory") >= 2
        plans.append((plan.counts, *(sorted(part) for part in parts)))
    splits.extend(call for call in calls if call == "_joined_in_range")
    return plans


def test_the_join_in_memory_and_by_partition_make_the_same_plan(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from pipeline.sources.listing import Shard

    listed = [VideoObject(f"s3://b/v/{i:02d}.mp4", 10, f"e{i}", None) for i in range(12)]
    listed.append(VideoObject("file:///v/touched.mp4", 10, None, T1))
    listed.append(VideoObject("file:///v/untouched.mp4", 10, None, None))
    rows = [known(v) for v in listed[:8]] + [known(listed[-2], mtime=T0), known(listed[-1], mtime=None)]
    rows[1] = known(listed[1], size_bytes=9)  # changed
    rows[2] = known(listed[2], etag="old")  # changed
    rows[3] = known(listed[3], status="failed")  # indexed again
    rows[4] = known(listed[4], status="deleted")  # back: new
    rows[5] = known(listed[5], derived_digest="other")  # scenes only
    rows[6] = known(listed[6], digest="other")  # other outputs
    rows.append(known(listed[0]))  # indexed twice: counted once
    gone = [VideoObject(f"s3://b/v/gone{i}.mp4", 10, "g", None) for i in range(6)]
    rows += [known(v) for v in gone] + [known(gone[0], uri="s3://b/other/x.mp4", video_id=video_id_of("s3://b/other/x.mp4"))]
    rows.append(known(VideoObject("s3://b/v/gone-before.mp4", 10, "g", None), status="deleted"))
    listed.append(listed[9])  # listed twice: counted once
    scope = folder("s3://b/v")
    scope = ListingScope(scope.protocol, scope.glob, scope.extensions, Shard(0, 1))
    splits: list[str] = []
    # At the diff's own logger: an earlier test may have raised the root logger's level.
    with caplog.at_level(logging.WARNING, logger="pipeline.index.diff"):
        in_memory, by_partition = _plan_both_ways(tmp_path, monkeypatch, listed, rows, scope, splits=splits)
    assert in_memory == by_partition
    assert len(splits) >= 3  # partitions split again
    counts, todo, rederive, deleted = by_partition
    assert {k: counts[k] for k in ("listed", "new", "changed", "unchanged", "deleted")} == {
        "listed": 14, "new": 5, "changed": 6, "unchanged": 3, "deleted": 6
    }
    assert todo == ["file:///v/touched.mp4", *(f"s3://b/v/{i:02d}.mp4" for i in (1, 2, 3, 4, 6, 8, 9, 10, 11))]
    assert rederive == ["s3://b/v/05.mp4"]
    assert deleted == [v.uri for v in gone]
    assert "s3://b/v/09.mp4 is listed or indexed more than once" in caplog.text


def video_id_of(uri: str) -> str:
    from pipeline.sources.listing import video_id_for

    return video_id_for(uri)


def test_an_empty_listing_of_a_large_index_deletes_nothing_unless_allowed(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rows = [known(VideoObject(f"s3://b/v/{i}.mp4", 10, "e", None)) for i in range(5)]
    with pytest.raises(EmptySourceError, match="holds 5 videos it covers"):
        _plan_both_ways(tmp_path, monkeypatch, [], rows, folder("s3://b/v"))
    for counts, _, _, deleted in _plan_both_ways(tmp_path, monkeypatch, [], rows, folder("s3://b/v"), allow_empty_source=True):
        assert counts["deleted"] == 5 and deleted == [f"s3://b/v/{i}.mp4" for i in range(5)]


def test_partition_values_are_the_ids_first_32_bits_whatever_else_is_in_the_batch() -> None:
    import zlib

    import pyarrow as pa

    from pipeline.index.diff import partition_value
    from pipeline.sources.listing import video_id_for

    ids = [video_id_for(f"s3://b/v/{i}.mp4") for i in range(50)]
    expected = [int(i[:8], 16) for i in ids]
    assert partition_value(pa.array(ids)).tolist() == expected
    assert partition_value(pa.chunked_array([ids[:20], ids[20:]])).tolist() == expected
    assert partition_value(pa.array(ids).slice(7)).tolist() == expected[7:]
    # An id that is not a uuid does not move the others: one id's value is the same in any batch.
    mixed = partition_value(pa.array([*ids, "not-a-uuid"])).tolist()
    assert mixed == [*expected, zlib.crc32(b"not-a-uuid")]


@pytest.mark.parametrize("pattern", ["*/x*.mp4", "a/**/*.mp4", "[ab]/*", "*.mov"])
def test_a_local_glob_source_is_walked_a_folder_at_a_time(tmp_path, monkeypatch, pattern) -> None:  # type: ignore[no-untyped-def]
    from fsspec.implementations.local import LocalFileSystem

    for name in ["x1.mp4", "y.mov", "a/x2.mp4", "a/b/x3.mp4", "b/x4.mp4", "b/z.mp4", "c/d/x5.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    fs = LocalFileSystem()
    expected = sorted(
        "file://" + name for name, info in fs.glob(f"{tmp_path}/{pattern}", detail=True).items()
        if info["type"] != "directory" and name.endswith((".mp4", ".mov"))
    )  # fmt: skip
    assert expected

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("fs.glob holds every object's info until it returns")

    monkeypatch.setattr(LocalFileSystem, "glob", whole)
    assert [v.uri for v in list_source(f"{tmp_path}/{pattern}", SourceConfig()).videos] == expected


def test_a_listing_streams_in_batches_of_compact_records(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pipeline.sources.listing as listing_module

    for i in range(7):
        (tmp_path / f"d{i % 2}").mkdir(exist_ok=True)
        (tmp_path / f"d{i % 2}" / f"v{i}.mp4").write_bytes(b"x" * i)
    monkeypatch.setattr(listing_module, "LISTING_BATCH_ROWS", 3)
    stream = listing_module.stream_source(str(tmp_path), SourceConfig())
    batches = list(stream.batches)
    assert [b.num_rows for b in batches] == [3, 3, 1]
    assert all(b.schema == listing_module.LISTED for b in batches)
    rows = sorted((row for b in batches for row in b.to_pylist()), key=lambda r: r["uri"])
    videos = list_source(str(tmp_path), SourceConfig()).videos
    assert [r["uri"] for r in rows] == [v.uri for v in videos]
    assert [(r["video_id"], r["size_bytes"], r["mtime"], r["location"]) for r in rows] == [
        (v.video_id, v.size_bytes, v.mtime, None) for v in videos
    ]
    assert [r["size_bytes"] for r in rows] == [0, 2, 4, 6, 1, 3, 5]
