"""The ``vindex`` command line. Thin: parses arguments and calls the library.

Exit codes: 0 success; 1 the run finished but some videos failed; 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pipeline.errors import ConfigError, VindexError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_INDEX = "./vindex-index"


def sample_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vindex" / "sample"


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run_index

    config = load_config(args.config, dict(_parse_override(s) for s in args.set))
    source = args.source
    if source is None:
        from pipeline.synthetic import sample_corpus

        folder = sample_dir()
        print(f"No SOURCE given: indexing the built-in sample corpus in {folder}", file=sys.stderr)
        sample_corpus(folder)
        source = str(folder)
    summary = run_index(source, args.index, config, full=args.full, show_progress=not args.quiet)
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
    for failure in summary.failures:
        print(f"  FAILED {failure.uri}: [{failure.stage}] {failure.message}")
    print(f"  index: {args.index} (tables: videos, shots, scenes, keyframes, runs)")
    print(f'next:   vindex query {args.index} "select uri, num_shots, num_scenes, status from videos"')
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def _cmd_query(args: argparse.Namespace) -> int:
    from pipeline.index import Index
    from pipeline.query import format_result, run_query

    table = run_query(Index(args.index), args.sql)
    print(format_result(table, args.format))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vindex", description="Index video corpora: shots, scenes, keyframes.")
    parser.add_argument(
        "--log-level", default=os.environ.get("VINDEX_LOG_LEVEL", "WARNING"), help="DEBUG, INFO, WARNING (default)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="index a corpus (default: the built-in sample) into an index")
    run.add_argument("source", nargs="?", help="folder, file or glob URL (local path, memory://, s3://...)")
    run.add_argument("--index", default=DEFAULT_INDEX, help=f"index location (default {DEFAULT_INDEX})")
    run.add_argument("--config", help="YAML config file")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    run.add_argument("--full", action="store_true", help="re-index every video, even unchanged ones")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(func=_cmd_run)

    query = commands.add_parser("query", help="run SQL (DuckDB) over an index's tables")
    query.add_argument("index", help="index location")
    query.add_argument("sql", help="SQL over tables videos, shots, scenes, keyframes, runs")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(func=_cmd_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Progress lines are wanted in batch logs even at the default WARNING level.
    logging.getLogger("pipeline.progress").setLevel(min(logging.INFO, logging.getLogger().level))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"vindex: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VindexError as exc:
        print(f"vindex: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
