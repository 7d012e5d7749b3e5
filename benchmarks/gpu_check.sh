#!/usr/bin/env bash
# A short check of vindex on a CUDA machine (benchmarks/gpu_check.py), within a time limit.
#
#     benchmarks/gpu_check.sh [--force-cpu] [--clip-seconds S] [--copies N] [--config FILE]
#
# Installs nothing: run it in the repository's environment with a CUDA build of torch.
# Without CUDA it says "no CUDA" and exits 0. GPU_CHECK_TIMEOUT_S overrides the limit.
set -euo pipefail

# 5 minutes: the whole check is sized to about 2-3 minutes on a 16-core GPU machine.
TIMEOUT_S="${GPU_CHECK_TIMEOUT_S:-300}"
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled

status=0
timeout --kill-after=10 "$TIMEOUT_S" python benchmarks/gpu_check.py "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "gpu_check: stopped after ${TIMEOUT_S} s (GPU_CHECK_TIMEOUT_S to change)" >&2
fi
exit "$status"
