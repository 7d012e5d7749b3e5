"""The ``vindex`` command line. Thin: parses arguments and calls the library.

Exit codes:

* 0: success;
* 1: the run finished, but some videos failed (each has its ``failed`` row);
* 2: bad usage or configuration, or a network's weights not installed (any other
  :class:`~pipeline.errors.VindexError`); nothing was processed;
* 3: an infrastructure failure stopped the command midway (the index could not be written:
  disk full, read-only, access denied, commits that keep conflicting; a Ray cluster that
  cannot be reached). What was committed before stays, and the next run resumes from it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pipeline.cache import cache_dir
from pipeline.errors import ClusterUnreachableError, ConfigError, IndexWriteError, NetworkExposureError, VindexError
from pipeline.redaction import install as install_redaction
from pipeline.redaction import shown

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.config import Config
    from pipeline.execution.submit import JobRow
    from pipeline.index.dedup import Shots, Spread

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INFRASTRUCTURE = 0, 1, 2, 3
#: Exit codes a cluster job's driver passes back through `vindex submit --wait`.
RUN_EXIT_CODES = (EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INFRASTRUCTURE)
DEFAULT_INDEX = "./vindex-index"
#: Deleted files `vindex compact` names per table (the rest are logged).
COMPACT_DELETED_SHOWN = 5


def sample_dir() -> Path:
    return cache_dir("sample")


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.execution.ray_runtime import stop_embedded_ray
    from pipeline.execution.runner import run_index
    from pipeline.sources.listing import Shard

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    source = args.source
    if source is None:
        from pipeline.synthetic import sample_corpus

        folder = sample_dir()
        print(f"No SOURCE given: indexing the built-in sample corpus in {folder}", file=sys.stderr)
        sample_corpus(folder)
        source = str(folder)
    summary = run_index(
        source,
        args.index,
        config,
        full=args.full,
        show_progress=not args.quiet,
        allow_empty_source=args.allow_empty_source,
        rederive_scenes=args.rederive_scenes,
        shard=Shard.parse(args.shard) if args.shard else None,
    )
    counts = summary.counts
    print(
        f"run {summary.run_id}: {counts['ok']} videos ok, {counts['failed']} failed, "
        f"{counts['unchanged']} unchanged, {counts['deleted']} deleted ({counts['listed']} listed) "
        f"in {summary.seconds:.1f} s"
    )
    print(
        f"  shots {summary.shots}   scenes {summary.scenes}   keyframes {summary.keyframes}   "
        f"frames {counts['frames']:,} at {summary.frames_per_second:,.0f} frames/s"
    )
    if summary.rederived:
        print(f"  scenes derived again from stored shots (no decoding) for {summary.rederived} videos")
    for failure in summary.failures:
        print(shown(f"  FAILED {failure.uri}: [{failure.stage}] {failure.message}"))
    index = shown(args.index)
    print(f"  index: {index} (tables: videos, shots, scenes, keyframes, runs)")
    print(f'next:   vindex query {index} "select uri, num_shots, num_scenes, status from videos"')
    stop_embedded_ray()  # now, not at exit: see its docstring
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def _cmd_query(args: argparse.Namespace) -> int:
    from pipeline.index.snapshot import vacuumed
    from pipeline.index.query import format_result, run_query
    from pipeline.index.reader import open_index

    index = open_index(args.index)
    if args.as_of:
        index = index.as_of(args.as_of)
    try:
        table = run_query(index, args.sql, timeout_s=args.timeout)
    except FileNotFoundError as exc:
        if not args.as_of:
            raise
        # delta-rs finds a vacuumed version's files missing only when it scans them.
        raise vacuumed(args.as_of, exc) from exc
    print(format_result(table, args.format))
    return EXIT_OK


def _cmd_similar(args: argparse.Namespace) -> int:
    from pipeline.index.reader import open_index
    from pipeline.index.similarity import format_matches, parse_keyframe, similar

    from pipeline.config import StorageConfig
    from pipeline.sources.storage import fsspec_options

    keyframe = parse_keyframe(args.keyframe) if args.keyframe is not None else None
    matches = similar(
        open_index(args.index),
        image=args.image,
        keyframe=keyframe,
        k=args.k,
        fs_options=fsspec_options(args.index, StorageConfig()),
        exact=args.exact,
        level=args.level,
    )
    print(format_matches(matches, args.format))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.index.reader import open_index
    from pipeline.index.report import write_report

    summary = write_report(open_index(args.index), args.out, videos_per_page=args.per_page)
    print(
        f"report of {summary.videos} videos: {summary.list_pages} list pages, {summary.videos} video pages, "
        f"{summary.thumbnails} thumbnails"
    )
    print(f"open: {summary.index_page.resolve().as_uri()}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.index.reader import open_index
    from pipeline.index.status import format_status, index_status

    print(format_status(index_status(open_index(args.index), runs=args.runs)))
    return EXIT_OK


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.execution.submit import connect, follow_job, job_info, submit_index
    from pipeline.sources.listing import Shard

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    client = connect(args.address)
    job_id = submit_index(
        client,
        args.source,
        args.index,
        config,
        full=args.full,
        allow_empty_source=args.allow_empty_source,
        shard=str(Shard.parse(args.shard)) if args.shard else None,
    )
    print(f"submitted job {job_id} to {client.get_address()}", flush=True)
    if not args.wait:
        print(f"next:   vindex jobs logs {job_id} --follow --address {client.get_address()}")
        return EXIT_OK
    follow_job(client, job_id, sys.stdout)
    return job_outcome(job_info(client, job_id))


def job_outcome(info: JobRow) -> int:
    """0 if the job succeeded; else the run's own exit code (1, 2 or 3) where it has one, or 1."""
    if info.status == "SUCCEEDED":
        print(f"job {info.job_id} SUCCEEDED")
        return EXIT_OK
    print(shown(f"vindex: job {info.job_id} {info.status}: {info.message}"), file=sys.stderr)
    return info.driver_exit_code if info.driver_exit_code in RUN_EXIT_CODES else EXIT_SOME_FAILED


def _cmd_jobs_list(args: argparse.Namespace) -> int:
    from pipeline.execution.submit import connect, list_jobs

    for row in list_jobs(connect(args.address)):
        print(shown(f"{row.job_id}  {row.status:<9}  {row.started or '-':<20}  {row.entrypoint}"))
    return EXIT_OK


def _cmd_jobs_status(args: argparse.Namespace) -> int:
    from pipeline.execution.submit import connect, job_info

    row = job_info(connect(args.address), args.job_id)
    print(f"{row.job_id} {row.status}" + (f" ({row.message})" if row.message else ""))
    return EXIT_OK


def _cmd_jobs_logs(args: argparse.Namespace) -> int:
    from pipeline.execution.submit import connect, follow_job, job_info, job_logs

    client = connect(args.address)
    if not args.follow:
        sys.stdout.write(job_logs(client, args.job_id))
        return EXIT_OK
    follow_job(client, args.job_id, sys.stdout)
    return job_outcome(job_info(client, args.job_id))


def _cmd_jobs_stop(args: argparse.Namespace) -> int:
    from pipeline.execution.submit import connect, job_status, stop_job, wait_for_job

    client = connect(args.address)
    if not stop_job(client, args.job_id):
        print(f"job {args.job_id} had already ended: {job_status(client, args.job_id)}")
        return EXIT_OK
    if args.wait:
        print(f"job {args.job_id} {wait_for_job(client, args.job_id)}")
    else:
        print(f"job {args.job_id}: stop requested")
    return EXIT_OK


def _cmd_compact(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.index.store import Index
    from pipeline.index.maintenance import compact_index
    from pipeline.sources.storage import delta_options, fsspec_options

    from pipeline.index import ann

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    index = Index(args.index, delta_options(args.index, config.storage))
    fs_options = fsspec_options(args.index, config.storage)
    for table in compact_index(index, args.retention_hours, fs_options):
        print(
            f"{table.table:<10} files {table.files_before} -> {table.files_after}, "
            f"{table.files_vacuumed} unreferenced data files deleted"
        )
        for name in table.deleted[:COMPACT_DELETED_SHOWN]:
            print(f"  deleted {table.table}/{name}")
        if len(table.deleted) > COMPACT_DELETED_SHOWN:
            print(f"  ... and {len(table.deleted) - COMPACT_DELETED_SHOWN} more (each is logged at --log-level info)")
    for level in ann.LEVELS.values():
        built = ann.build(index, fs_options, min_rows=args.similar_min_rows, level=level.name)
        if built is None:
            minimum = ann.MIN_ROWS if args.similar_min_rows is None else args.similar_min_rows
            print(f"similar    no ANN index of {level.table}: under {minimum} rows, `vindex similar` searches exactly")
        else:
            print(
                f"similar    ANN index {built.build} of {built.rows} {level.table} written "
                f"({built.vectors_bytes / 1e6:.0f} MB)"
            )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.index.export import export_index
    from pipeline.index.reader import open_index
    from pipeline.sources.storage import delta_options, fsspec_options

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    index = open_index(args.index, delta_options(args.index, config.storage))
    summary = export_index(
        index, args.dest, as_of_run=args.as_of, overwrite=args.overwrite, fs_options=fsspec_options(args.dest, config.storage)
    )
    for relative in summary.removed:
        print(f"deleted the earlier export's {args.dest.rstrip('/')}/{relative}")
    for relative in summary.left:
        print(f"left in place (not the export's): {args.dest.rstrip('/')}/{relative}")
    for table in summary.tables:
        print(f"{table.table:<10} {table.rows:>10,} rows  -> {args.dest.rstrip('/')}/{table.table}/")
    print(f"export of {args.index}" + (f" as of run {args.as_of}" if args.as_of else "") + f": {summary.rows:,} rows")
    return EXIT_OK


def _settings_parser() -> argparse.ArgumentParser:
    """--config and --set, shared by the commands that take a configuration."""
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument("--config", help="YAML config file (validated here, before any work)")
    settings.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    return settings


def _add_cluster_commands(commands: Any) -> None:
    """``submit``, ``jobs ...`` (Ray Jobs API) and ``compact``."""
    from pipeline.index.maintenance import DEFAULT_RETENTION_HOURS, MIN_RETENTION_HOURS

    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument(
        "--address", help="the Ray cluster's dashboard URL, http://HEAD:8265 (default: $RAY_ADDRESS)"
    )

    submit = commands.add_parser(
        "submit", parents=[cluster, _settings_parser()], help="run an index job on a Ray cluster"
    )
    submit.add_argument("source", nargs="?", help="corpus URL as the cluster sees it (s3://...; default: the sample)")
    submit.add_argument("--index", required=True, help="index location as the cluster sees it")
    submit.add_argument("--full", action="store_true", help="re-index every video, even unchanged ones")
    submit.add_argument(
        "--allow-empty-source", action="store_true", help="as for `vindex run`: an empty listing may mark videos deleted"
    )
    submit.add_argument("--shard", metavar="K/N", help="as for `vindex run`: index part K of N of the listing")
    submit.add_argument("--wait", action="store_true", help="stream the job's log; exit non-zero if it fails")
    submit.set_defaults(func=_cmd_submit)

    jobs = commands.add_parser("jobs", help="list, inspect, follow or stop jobs on a Ray cluster")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)
    actions.add_parser("list", parents=[cluster], help="every job the cluster knows").set_defaults(
        func=_cmd_jobs_list
    )
    for name, func, help_text in (
        ("status", _cmd_jobs_status, "a job's status"),
        ("logs", _cmd_jobs_logs, "a job's log"),
        ("stop", _cmd_jobs_stop, "stop a job"),
    ):
        action = actions.add_parser(name, parents=[cluster], help=help_text)
        action.add_argument("job_id", help="the id `vindex submit` printed")
        action.set_defaults(func=func)
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="stream until the job ends")
        if name == "stop":
            action.add_argument("--wait", action="store_true", help="wait until the job has stopped")

    compact = commands.add_parser(
        "compact", parents=[_settings_parser()], help="compact an index's small files and delete old versions' files"
    )
    compact.add_argument("index", help="index location")
    compact.add_argument(
        "--retention-hours",
        type=int,
        default=DEFAULT_RETENTION_HOURS,
        help=(
            f"keep the files of versions younger than this (default {DEFAULT_RETENTION_HOURS}: a week; "
            f"at least {MIN_RETENTION_HOURS}: younger files may be a running run's, not yet committed)"
        ),
    )
    compact.add_argument(
        "--similar-min-rows",
        type=int,
        default=None,
        metavar="N",
        help="build the ANN indexes `vindex similar` uses from this many keyframes or shots (default 50000)",
    )
    compact.set_defaults(func=_cmd_compact)


def _cmd_clips(args: argparse.Namespace) -> int:
    from pipeline.clips.cut import EncodeSettings
    from pipeline.clips.run import run_clips
    from pipeline.execution.ray_runtime import stop_embedded_ray
    from pipeline.clips.select import Selection
    from pipeline.config import load_config
    from pipeline.index.reader import open_index
    from pipeline.sources.storage import delta_options

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    selection = Selection(args.by, args.min_seconds, args.max_seconds, args.where, args.trim_seconds, args.unique)
    settings = EncodeSettings("copy" if args.copy else "reencode", args.crf, args.preset)
    index = open_index(args.index, delta_options(args.index, config.storage))
    summary = run_clips(index, args.out, selection, settings, config=config, show_progress=not args.quiet)
    print(
        f"clips run {summary.run_id}: {summary.ok} clips ok, {summary.failed} failed, {summary.skipped} already done; "
        f"{summary.bytes_written / 1e6:,.1f} MB in {summary.seconds:.1f} s"
    )
    for failure in summary.failures[:CLIP_FAILURES_SHOWN]:
        print(shown(f"  FAILED {failure.video_uri} clip {failure.clip_id}: {failure.message}"))
    if len(summary.failures) > CLIP_FAILURES_SHOWN:
        print(f"  ... and {len(summary.failures) - CLIP_FAILURES_SHOWN} more (status = 'failed' in the clips table)")
    stop_embedded_ray()
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _cmd_dedup(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.index.dedup import DEFAULT_THRESHOLD, dedup_index, describe_groups
    from pipeline.index.reader import open_index
    from pipeline.sources.storage import delta_options, fsspec_options

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    index = open_index(args.index, delta_options(args.index, config.storage))
    summary = dedup_index(
        index, DEFAULT_THRESHOLD if args.threshold is None else args.threshold, full=args.full,
        fs_options=fsspec_options(args.index, config.storage), spread_for=_dedup_spread(config) if args.ray else None,
    )
    print(
        f"dedup run {summary.run_id}: {summary.shots:,} shots, {summary.compared:,} compared with the index"
        f"{' (all: full run)' if summary.full else ''}; {summary.shot_groups:,} groups of duplicate shots "
        f"({summary.duplicate_shots:,} duplicates), {summary.video_groups:,} groups of duplicate videos "
        f"({summary.duplicate_videos:,} duplicates) in {summary.seconds:.1f} s"
    )
    for line in describe_groups(index, args.level, DEDUP_GROUPS_SHOWN):
        print(shown(line))
    if args.ray:
        from pipeline.execution.ray_runtime import stop_embedded_ray

        stop_embedded_ray()
    return EXIT_OK


def _dedup_spread(config: Config) -> Callable[[Shots], Spread]:
    """``vindex dedup --ray``: the search and scores on Ray, joined as `vindex run` joins it."""
    from functools import partial

    from pipeline.execution.dedup_spread import ray_spread

    return partial(ray_spread, config)


#: Groups listed by `vindex dedup`; the duplicates table holds them all.
DEDUP_GROUPS_SHOWN = 20
#: The default of ``vindex dedup --threshold`` as its help shows it, without importing the
#: dedup module (pyarrow) to build the parser: pipeline.index.dedup.DEFAULT_THRESHOLD (a test
#: keeps the two equal).
DEDUP_THRESHOLD_SHOWN = "0.94"
#: Failed clips listed by `vindex clips`; the clips table holds them all.
CLIP_FAILURES_SHOWN = 20


def _add_curation_commands(commands: Any) -> None:
    """``export`` (plain Parquet) and ``clips`` (clip files of shots or scenes)."""
    from pipeline.clips.cut import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS

    export = commands.add_parser(
        "export", parents=[_settings_parser()], help="write the index's live rows as plain Parquet, one folder per table"
    )
    export.add_argument("index", help="index location")
    export.add_argument("dest", help="destination folder (local path or s3://...)")
    export.add_argument("--as-of", metavar="RUN_ID", help="export the index as it was when this run finished")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export at DEST")
    export.set_defaults(func=_cmd_export)

    clips = commands.add_parser(
        "clips", parents=[_settings_parser()], help="cut one clip file per shot or scene (frame-exact H.264, or stream copy)"
    )
    clips.add_argument("index", help="index location")
    clips.add_argument("--out", required=True, metavar="DEST", help="folder for the clips (local path or s3://...)")
    clips.add_argument("--by", choices=("shot", "scene"), default="shot", help="one clip per shot (default) or per scene")
    clips.add_argument("--min-seconds", type=float, default=0.0, help="skip units shorter than this (after trimming)")
    clips.add_argument("--max-seconds", type=float, help="split longer units into equal pieces of at most this length")
    clips.add_argument("--where", metavar="SQL", help="SQL predicate on the unit's columns, its video's uri and fps, and seconds")
    clips.add_argument("--trim-seconds", type=float, default=0.0, help="drop this much from each end of a unit")
    clips.add_argument(
        "--copy", action="store_true", help="stream copy, no re-encoding: cut at keyframes, not frame-exact (records the real frames)"
    )
    clips.add_argument(
        "--crf", type=int, default=DEFAULT_CRF, help=f"x264 quality of re-encoded clips (default {DEFAULT_CRF}; lower is better)"
    )
    clips.add_argument(
        "--preset", choices=X264_PRESETS, default=DEFAULT_PRESET, help=f"x264 preset of re-encoded clips (default {DEFAULT_PRESET})"
    )
    clips.add_argument(
        "--unique", action="store_true",
        help="one clip per group of duplicate shots, its representative (`vindex dedup` first; --by shot)",
    )
    clips.add_argument("--quiet", action="store_true", help="no progress display")
    clips.set_defaults(func=_cmd_clips)

    dedup = commands.add_parser(
        "dedup", parents=[_settings_parser()],
        help="group near-duplicate shots and videos across the index into its duplicates table",
    )
    dedup.add_argument("index", help="index location")
    dedup.add_argument(
        "--level", choices=("shot", "video"), default="shot",
        help="which groups to list (both are written to the duplicates table; default shot)",
    )
    dedup.add_argument(
        "--threshold", type=float,
        help=f"similarity two shots need to be duplicates (default {DEDUP_THRESHOLD_SHOWN}, chosen in docs/dedup.md)",
    )
    dedup.add_argument("--full", action="store_true", help="compare every shot again, not only those new since the last run")
    dedup.add_argument(
        "--ray", action="store_true",
        help="search and score on Ray's workers: the cluster of $RAY_ADDRESS (a job), else a Ray on this machine's CPUs",
    )
    dedup.set_defaults(func=_cmd_dedup)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _timeout(text: str) -> float | None:
    """Seconds (more than 0), or ``0`` / ``none`` for no limit."""
    if text.strip().lower() in ("0", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects seconds, 0 or none, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expects seconds more than 0, 0 or none, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vindex", description="Index video corpora: shots, scenes, keyframes.")
    parser.add_argument(
        "--log-level", default=os.environ.get("VINDEX_LOG_LEVEL", "WARNING"), help="DEBUG, INFO, WARNING (default)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", parents=[_settings_parser()], help="index a corpus (default: the built-in sample) into an index"
    )
    run.add_argument("source", nargs="?", help="folder, file or glob URL (local path, memory://, s3://...)")
    run.add_argument("--index", default=DEFAULT_INDEX, help=f"index location (default {DEFAULT_INDEX})")
    run.add_argument("--full", action="store_true", help="re-index every video, even unchanged ones")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument(
        "--rederive-scenes",
        action="store_true",
        help="derive every current video's scenes again from the stored shots, without decoding "
        "(a change of scenes.* settings alone does it by itself)",
    )
    run.add_argument(
        "--allow-empty-source",
        action="store_true",
        help="a listing that finds no video marks every indexed video it covers deleted (default: stop, exit 2)",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="index only part K of N of the listing (0 <= K < N, split by video id): N runs with "
        "0/N ... N-1/N index one source into one index at once; each deletes only in its own part",
    )
    run.set_defaults(func=_cmd_run)

    query = commands.add_parser("query", help="run SQL (DuckDB) over an index's tables")
    query.add_argument("index", help="index location")
    query.add_argument("sql", help="SQL over tables videos, shots, scenes, keyframes, runs (and clips, duplicates, once written)")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument(
        "--timeout", type=_timeout, default=60.0, metavar="SECONDS",
        help="stop a query running longer than this, exit 2 (default 60; 0 or none: no limit)",
    )
    query.add_argument(
        "--as-of", metavar="RUN_ID", help="query the index as it was when this run finished (see `vindex status`)"
    )
    query.set_defaults(func=_cmd_query)

    similar = commands.add_parser("similar", help="keyframes nearest to an image or to a keyframe (cosine similarity)")
    similar.add_argument("index", help="index location")
    target = similar.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", metavar="PATH", help="an image file (path or fsspec URL)")
    target.add_argument("--keyframe", metavar="VIDEO_ID:FRAME", help="a keyframe of the index")
    similar.add_argument("-k", type=_positive, default=10, help="how many matches (default 10)")
    similar.add_argument("--format", choices=("table", "csv", "json"), default="table")
    similar.add_argument(
        "--exact", action="store_true", help="score every row, even where `vindex compact` built an ANN index"
    )
    similar.add_argument(
        "--level",
        choices=("keyframe", "shot"),
        default="keyframe",
        help="search keyframes (default) or shots (by the mean embedding of their frames)",
    )
    similar.set_defaults(func=_cmd_similar)

    report = commands.add_parser("report", help="write a static HTML report: runs, failures, shot timelines, keyframes")
    report.add_argument("index", help="index location")
    report.add_argument("--out", required=True, metavar="DIR", help="folder to write the report into (local)")
    report.add_argument("--per-page", type=_positive, default=100, help="videos per list page (default 100)")
    report.set_defaults(func=_cmd_report)

    status = commands.add_parser("status", help="an index's latest runs, videos by status, failed videos")
    status.add_argument("index", help="index location")
    status.add_argument("--runs", type=_positive, default=5, help="how many of the latest runs to show (default 5)")
    status.set_defaults(func=_cmd_status)
    _add_curation_commands(commands)
    _add_cluster_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # no credentials, no terminal controls in log lines
        install_redaction(handler)
    # Progress lines are wanted in batch logs even at the default WARNING level.
    logging.getLogger("pipeline.execution.progress").setLevel(min(logging.INFO, logging.getLogger().level))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"vindex: configuration error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (IndexWriteError, ClusterUnreachableError, NetworkExposureError) as exc:
        print(f"vindex: infrastructure error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except VindexError as exc:
        print(f"vindex: error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # storage or system failure outside the index (temporary files, ...)
        print(f"vindex: infrastructure error: {type(exc).__name__}: {shown(str(exc))}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE


def console() -> NoReturn:
    """The ``vindex`` command: :func:`main`, then the process ends at once with its exit status
    (:func:`~pipeline.execution.ray_runtime.end_process`)."""
    from pipeline.execution.ray_runtime import end_process

    end_process(main())


if __name__ == "__main__":
    console()
