"""The benchmarks' memory sampler paces itself: a reading of a big process tree's PSS is
costly enough that sampling it four times a second slowed the run being measured."""

from __future__ import annotations

import time

import pytest

from benchmarks import measure
from benchmarks.measure import SAMPLER_MAX_CORE_SHARE, PeakRSS, sampler_wait_s


def test_a_cheap_reading_keeps_the_interval() -> None:
    assert sampler_wait_s(0.25, 0.001) == 0.25


def test_a_costly_reading_spaces_the_next_one_out() -> None:
    assert sampler_wait_s(0.25, 0.035) == pytest.approx(0.035 / SAMPLER_MAX_CORE_SHARE)
    assert sampler_wait_s(0.25, 0.035) > 1.0


class _Stops:
    """A stop event that lets ``rounds`` readings through and records each wait asked for."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return len(self.waits) >= self.rounds

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.is_set()

    def set(self) -> None:
        self.rounds = 0


def test_the_sampler_waits_longer_after_a_costly_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def costly_reading(root: int) -> int:
        started = time.thread_time()
        while time.thread_time() - started < 0.02:  # 20 ms of this thread's CPU
            pass
        return 7 << 20

    monkeypatch.setattr(measure, "tree_rss_bytes", costly_reading)
    sampler = PeakRSS(interval_s=0.25)
    stops = _Stops(rounds=3)
    sampler._stop = stops  # type: ignore[assignment]
    sampler._run()
    assert len(stops.waits) == 3
    assert all(wait >= 0.02 / SAMPLER_MAX_CORE_SHARE for wait in stops.waits)
    assert sampler.readings == 3 and sampler.cpu_s >= 0.06
    assert sampler.peak == 7 << 20


def test_measure_reports_the_peak_and_the_frames() -> None:
    frames, seconds, peak = measure.measure(lambda: 42)
    assert frames == 42 and seconds >= 0 and peak > 0
