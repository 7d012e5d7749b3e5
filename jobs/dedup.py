"""Job entrypoint: group an index's near-duplicate shots and videos into its duplicates table.

    python -m jobs.dedup INDEX [--threshold T] [--full] [--config FILE] [--set SECTION.KEY=VALUE]

Only the shots indexed since the last run are compared with the index (``--full``: all).
Ray Jobs set RAY_ADDRESS, so the candidate search and the pair scores run on the cluster's
workers (``vindex dedup --ray``); reading the shots, building the index and grouping run in
the job's driver. Exit codes are those of ``vindex dedup``; see docs/dedup.md.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main
from pipeline.execution.ray_runtime import end_process


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return cli_main(["--log-level", "INFO", "dedup", *args, "--ray"])


if __name__ == "__main__":
    end_process(main())
