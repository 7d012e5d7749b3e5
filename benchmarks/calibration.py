"""The precision calibration that ``inference.precision: auto`` runs on a CPU, as a table.

    python benchmarks/calibration.py [--threads N] [--repeat 2] [--all | --cached]

Runs :func:`pipeline.models.calibration.calibrate` on this machine, ignoring the cache (unless
``--cached``, which goes through the cache as a model actor does), and prints, for each
network's candidates: frames/s of its fastest timed pass, its difference from float32 (the shot
network's largest probability difference, the embedding network's smallest cosine), whether
that is within tolerance, and which one is chosen; then the seconds the calibration took.

``--all`` measures the bf16 candidates on a CPU without native bf16 too (the calibration
leaves them out there: torch emulates bf16, and this shows how slowly).

With ``--repeat`` it calibrates that many times in a row, to show how stable the choice is on
a machine shared with other work. Under an instruction-set cap, e.g.
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``, the header's capability line shows
whether the cap took effect.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import logging
import os
import time

import torch

from pipeline.models.calibration import calibrate, calibrated, format_table, machine_key
from pipeline.models.efficientnet_lite import load_efficientnet_lite0
from pipeline.models.transnetv2 import load_transnetv2

from benchmarks.measure import machine_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--repeat", type=int, default=1, help="calibrations in a row")
    parser.add_argument("--cached", action="store_true", help="through the cache, as a model actor")
    parser.add_argument("--all", action="store_true", help="bf16 candidates on CPUs without native bf16 too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(machine_header(), flush=True)
    started = time.perf_counter()
    shot_model, embed_model = load_transnetv2("cpu"), load_efficientnet_lite0("cpu")
    print(f"networks loaded in {time.perf_counter() - started:.1f} s", flush=True)
    for attempt in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        if args.cached:
            found = calibrated(shot_model, embed_model)
            if found is None:
                print("no calibration (the lock was not had)")
                continue
            calibration = found
        else:
            calibration = calibrate(shot_model, embed_model, machine_key(), emulated_bf16=args.all)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        print(f"\ncalibration {attempt + 1}/{args.repeat}: {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"(measured {calibration.measured_at} in {calibration.seconds:.1f} s); load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} after")
        print(format_table(calibration), flush=True)


if __name__ == "__main__":
    main()
