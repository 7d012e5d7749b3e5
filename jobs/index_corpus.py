"""Job entrypoint: index a corpus into an index on the Ray cluster this job runs on.

    python -m jobs.index_corpus SOURCE --index INDEX [--config FILE] [--full]

Ray Jobs set RAY_ADDRESS, so the run joins the cluster instead of starting its own Ray.
Exit codes are those of ``vindex run``.
"""

from __future__ import annotations

import sys

from pipeline.cli import main


def run(argv: list[str]) -> int:
    return main(["--log-level", "INFO", "run", *argv, "--quiet"])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
