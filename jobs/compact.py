"""Job entrypoint: compact an index's small files and vacuum its old versions.

    python -m jobs.compact INDEX [--retention-hours H]

Safe while a run writes to INDEX: vacuum keeps every file younger than MIN_RETENTION_HOURS
(see pipeline.index.maintenance). Exit codes are those of ``vindex compact``.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main
from pipeline.execution.ray_runtime import end_process


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return cli_main(["--log-level", "INFO", "compact", *args])


if __name__ == "__main__":
    end_process(main())
