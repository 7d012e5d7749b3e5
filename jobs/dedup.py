"""Job entrypoint: group an index's near-duplicate shots and videos into its duplicates table.

    python -m jobs.dedup INDEX [--threshold T] [--full]

Only the shots indexed since the last run are compared with the index (``--full``: all).
Exit codes are those of ``vindex dedup``; see docs/dedup.md.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return cli_main(["--log-level", "INFO", "dedup", *args])


if __name__ == "__main__":
    sys.exit(main())
