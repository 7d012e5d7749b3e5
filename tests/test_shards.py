"""`vindex run --shard K/N`: N runs index disjoint parts of one listing into one index at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipeline.config import SourceConfig
from pipeline.errors import ConfigError
from pipeline.digests import Digests
from pipeline.index.diff import diff_against_index
from pipeline.index.store import Index
from pipeline.sources.listing import Shard, list_source
from testkit import synthetic
from testkit.processes import run_together

SHARDS = 4
CLIPS = 8


def test_shard_parse() -> None:
    assert Shard.parse("0/4") == Shard(0, 4) and str(Shard.parse("3/4")) == "3/4"
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0", "1/4/2"):
        with pytest.raises(ConfigError, match="--shard expects K/N"):
            Shard.parse(bad)


def test_shards_split_a_listing_into_disjoint_parts(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"v{i:02d}.mp4").write_bytes(b"x" * (i + 1))
    whole = {v.uri for v in list_source(str(tmp_path), SourceConfig()).videos}
    parts = [{v.uri for v in list_source(str(tmp_path), SourceConfig(), shard=Shard(k, SHARDS)).videos}
             for k in range(SHARDS)]
    assert set().union(*parts) == whole and sum(len(p) for p in parts) == len(whole) == 40
    assert all(parts)  # 40 uuid5 ids over 4 parts: none empty


def test_a_shard_deletes_only_in_its_own_part(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"v{i:02d}.mp4").write_bytes(b"x")
    whole = list_source(str(tmp_path), SourceConfig()).videos
    known = [{**v.to_row(), "status": "ok", "config_digest": "o", "derived_digest": "d"} for v in whole]
    for k in range(SHARDS):
        listing = list_source(str(tmp_path), SourceConfig(), shard=Shard(k, SHARDS))
        mine = listing.videos[1:]  # this part's first video is gone; the other parts' were not listed
        plan = diff_against_index(mine, known, listing.scope, Digests("o", "d"), full=False)
        assert [row["uri"] for row in plan.deleted] == [listing.videos[0].uri]
        assert plan.counts["unchanged"] == len(mine)


@pytest.mark.slow
def test_four_concurrent_shards_index_one_source_into_one_index(tmp_path: Path) -> None:
    source, index_path = tmp_path / "src", tmp_path / "idx"
    source.mkdir()
    for i in range(CLIPS):
        spec = synthetic.simple_spec([25, 30], "cut", contents=[2 * i, 2 * i + 1], width=128, height=72, seed=40 + i)
        synthetic.write_clip(source / f"clip{i}.mp4", spec)
    command = [sys.executable, "-m", "pipeline.cli", "run", str(source), "--index", str(index_path), "--quiet",
               "--set", "write.commit_every_videos=1"]
    results = run_together([[*command, "--shard", f"{k}/{SHARDS}"] for k in range(SHARDS)], timeout_s=500)
    assert [code for code, _ in results] == [0] * SHARDS, [output for _, output in results]

    index = Index(str(index_path))
    videos = index.read("videos", columns=["video_id", "uri", "status", "run_id", "num_shots"]).to_pylist()
    assert sorted(Path(v["uri"]).name for v in videos) == sorted(f"clip{i}.mp4" for i in range(CLIPS))
    assert {v["status"] for v in videos} == {"ok"} and all(v["num_shots"] == 2 for v in videos)
    runs_rows = index.read("runs").to_pylist()
    assert sorted(r["source"].rsplit(" ", 1)[-1] for r in runs_rows) == [f"{k}/{SHARDS})" for k in range(SHARDS)]
    assert {r["status"] for r in runs_rows} == {"ok"}
    # Plain Delta readers: every child row belongs to the run its video's row names, none left over.
    owners = {v["video_id"]: v["run_id"] for v in videos}
    for name in ("shots", "scenes", "keyframes"):
        rows = DeltaTable(str(index_path / name)).to_pyarrow_table(columns=["video_id", "run_id"]).to_pylist()
        assert all(owners[r["video_id"]] == r["run_id"] for r in rows), name
    assert DeltaTable(str(index_path / "shots")).to_pyarrow_table().num_rows == 2 * CLIPS

    # An unchanged re-run of every shard does nothing: no video processed, none deleted.
    for k in range(SHARDS):
        again = subprocess.run([*command, "--shard", f"{k}/{SHARDS}"], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert " 0 videos ok, 0 failed, " in again.stdout and " 0 deleted " in again.stdout, again.stdout
    assert sorted(v["video_id"] for v in index.read("videos", columns=["video_id"]).to_pylist()) == sorted(owners)
