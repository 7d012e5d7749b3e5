"""Job entrypoint: index a corpus into an index on the Ray cluster this job runs on.

    python -m jobs.index_corpus [SOURCE] --index INDEX [--config FILE] [--set SECTION.KEY=VALUE] [--full]
        [--allow-empty-source] [--shard K/N]

Ray Jobs set RAY_ADDRESS, so the run joins the cluster instead of starting its own Ray.
Exit codes are those of ``vindex run``.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main
from pipeline.execution.ray_runtime import end_process


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return cli_main(["--log-level", "INFO", "run", *args, "--quiet"])


if __name__ == "__main__":
    end_process(main())
