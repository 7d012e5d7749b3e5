"""Job entrypoint: cut the clips of an index's shots or scenes on the Ray cluster this job runs on.

    python -m jobs.clips INDEX --out DEST [--by shot|scene] [--min-seconds S] [--max-seconds S]
        [--where SQL] [--trim-seconds S] [--copy] [--crf N] [--preset P] [--config FILE]
        [--set SECTION.KEY=VALUE]

Ray Jobs set RAY_ADDRESS, so the clips are cut by the cluster's workers instead of an
embedded Ray. INDEX and DEST are locations as the cluster sees them (s3://...). Exit codes
are those of ``vindex clips``: 1 when some clips failed (each has its failed row).
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main
from pipeline.execution.ray_runtime import end_process


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return cli_main(["--log-level", "INFO", "clips", *args, "--quiet"])


if __name__ == "__main__":
    end_process(main())
