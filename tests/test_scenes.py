from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.algorithms.attention import normalise
from pipeline.config import ScenesConfig
from pipeline.algorithms.scenes import boundary_cohesion, scene_ranges, scene_starts

DEFAULTS = ScenesConfig()


def unit(*rows: list[float]) -> np.ndarray:
    return normalise(np.array(rows, dtype=np.float64))


def place(cosine_to_a: float, other_axis: int) -> list[float]:
    """A unit vector with the given cosine to axis 0 (``a``), the rest on ``other_axis``."""
    row = [0.0] * 6
    row[0], row[other_axis] = cosine_to_a, math.sqrt(1 - cosine_to_a**2)
    return row


A, X, Y, Z = [1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0]
A_AGAIN = place(0.8, 5)  # the same place seen again: cosine 0.8 to A, 0 to X, Y, Z


def test_defaults_are_the_setting_chosen_on_real_footage() -> None:
    assert (DEFAULTS.window_shots, DEFAULTS.threshold, DEFAULTS.temperature, DEFAULTS.reference_cosine) == (3, 0.05, 0.02, 0.45)


def test_no_shots_and_one_shot() -> None:
    assert scene_ranges(np.zeros((0, 6)), DEFAULTS) == []
    assert scene_starts(np.zeros((0, 6)), DEFAULTS) == []
    assert scene_ranges(unit(A), DEFAULTS) == [(0, 0)]
    assert boundary_cohesion(unit(A), 3, 0.02, 0.45).shape == (0,)


def test_unrelated_shots_are_separate_scenes() -> None:
    e = unit(A, X, Y, Z)
    # Each shot keeps its attention (logit 0.45 / 0.02 against 0): e^-22.5 = 1.7e-10 crosses.
    np.testing.assert_allclose(boundary_cohesion(e, 3, 0.02, 0.45), 0, atol=1e-9)
    assert scene_ranges(e, DEFAULTS) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_identical_shots_are_one_scene() -> None:
    e = unit(*([A] * 8))
    cohesion = boundary_cohesion(e, 3, 0.02, 0.45)
    # Interior boundary: each shot shares its attention among the 5 others of the window
    # (itself at 0.45 gets e^-27.5 of a neighbour's weight), 3 of them across.
    assert cohesion[3] == pytest.approx(3 / 5, abs=1e-9)
    # First boundary: shot 0 gives all to the 3 across; each of those gives 1 of 3 back.
    assert cohesion[0] == pytest.approx((1 + 1 / 3) / 2, abs=1e-9)
    assert cohesion.min() >= 0.5
    assert scene_ranges(e, DEFAULTS) == [(0, 7)]


def test_two_identical_shots_attend_only_to_each_other() -> None:
    cohesion = boundary_cohesion(unit(A, A), 3, 0.02, 0.45)
    assert cohesion[0] == pytest.approx(1 / (1 + math.exp(-(1 - 0.45) / 0.02)), rel=1e-12)


def test_shots_without_embeddings_are_one_scene() -> None:
    # Zero vectors are 0 alike to everything, themselves included: attention is uniform.
    np.testing.assert_allclose(boundary_cohesion(np.zeros((4, 6)), 3, 0.02, 0.45), 0.5)
    assert scene_ranges(np.zeros((4, 6)), DEFAULTS) == [(0, 3)]


def test_a_place_seen_again_across_an_unrelated_shot_stays_one_scene() -> None:
    e = unit(A, X, A_AGAIN)
    # A and A' attend to each other (0.8 > 0.45), X to itself: at either boundary one side
    # sends everything across and the other half of it.
    np.testing.assert_allclose(boundary_cohesion(e, 3, 0.02, 0.45), [0.75, 0.75], atol=1e-6)
    assert scene_ranges(e, DEFAULTS) == [(0, 2)]
    # With a window of one shot A and A' never meet: three scenes.
    assert scene_ranges(e, ScenesConfig(window_shots=1)) == [(0, 0), (1, 1), (2, 2)]


def test_a_place_seen_again_across_two_unrelated_shots_within_the_window() -> None:
    e = unit(A, X, Y, A_AGAIN)
    np.testing.assert_allclose(boundary_cohesion(e, 3, 0.02, 0.45), [2 / 3, 1 / 2, 2 / 3], atol=1e-6)
    assert scene_ranges(e, DEFAULTS) == [(0, 3)]


def test_the_reference_decides_which_neighbours_belong_together() -> None:
    e = unit(A, place(0.5, 5), X)  # shot 1 is 0.5 alike to shot 0, unrelated to shot 2
    assert scene_ranges(e, DEFAULTS) == [(0, 1), (2, 2)]
    # Above 0.5 the pair keeps its attention: at 0.6 each sends e^-5 / (1 + e^-5) = 0.007
    # across, and shot 2, on the same side as shot 1, nothing: (0.007 + 0.007 / 2) / 2.
    assert boundary_cohesion(e, 3, 0.02, 0.6)[0] == pytest.approx(0.75 / (1 + math.exp(5)), rel=1e-6)
    assert scene_ranges(e, ScenesConfig(reference_cosine=0.6)) == [(0, 0), (1, 1), (2, 2)]


def test_scenes_at_both_ends_of_the_video() -> None:
    # A lone unrelated shot first and last; two places in between, each of two shots.
    y_again = [0, 0, 0.7, 0, math.sqrt(1 - 0.49), 0]
    e = unit(X, A, place(0.7, 4), Y, y_again, Z)
    assert scene_ranges(e, DEFAULTS) == [(0, 0), (1, 2), (3, 4), (5, 5)]
    # The first and last shots join their neighbour when it is alike.
    assert scene_ranges(unit(A, place(0.7, 4), X), DEFAULTS) == [(0, 1), (2, 2)]
    assert scene_ranges(unit(X, A, place(0.7, 4)), DEFAULTS) == [(0, 0), (1, 2)]


def test_scenes_are_deterministic_and_cover_every_shot_once() -> None:
    rng = np.random.default_rng(7)
    looks = rng.normal(size=(5, 32))
    e = normalise(looks[rng.integers(0, 5, size=40)] + 0.3 * rng.normal(size=(40, 32)))
    first = scene_ranges(e, DEFAULTS)
    assert scene_ranges(e.copy(), DEFAULTS) == first
    assert scene_ranges(e.astype(np.float32), DEFAULTS) == first
    assert [s for a, b in first for s in range(a, b + 1)] == list(range(40))


def test_embeddings_need_not_be_unit_norm() -> None:
    e = unit(A, A_AGAIN, X)
    assert scene_ranges(e * 3.0, DEFAULTS) == scene_ranges(e, DEFAULTS) == [(0, 1), (2, 2)]
