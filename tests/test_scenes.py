from __future__ import annotations

import dataclasses
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
    assert (DEFAULTS.window_shots, DEFAULTS.threshold, DEFAULTS.temperature, DEFAULTS.reference_cosine,
            DEFAULTS.colour_weight, DEFAULTS.centre_embeddings, DEFAULTS.shrink_within_scene) == (2, 0.2, 0.05, 0.2, 0.05, True, True)


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
    assert scene_ranges(e, ScenesConfig(window_shots=3, threshold=0.05, temperature=0.02, reference_cosine=0.45)) == [(0, 3)]


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


# --- colour beside the embedding ------------------------------------------------------------

from pipeline.algorithms.scenes import COLOUR_LEVELS, attention_cohesion, colour_histogram, shot_similarity  # noqa: E402


def layout(*cell_colours: tuple[float, float, float]) -> np.ndarray:
    """One frame's colour layout: 12 cells, cycling through ``cell_colours``."""
    cells = [cell_colours[k % len(cell_colours)] for k in range(12)]
    return np.array(cells, np.float32).reshape(1, 36)


RED, BLUE, GREY, BROWN = (200.0, 30.0, 30.0), (30.0, 40.0, 200.0), (128.0, 128.0, 128.0), (120.0, 70.0, 20.0)


def test_colour_histogram_counts_every_cell_of_every_frame_once() -> None:
    frames = np.concatenate([layout(RED), layout(RED, BLUE)])  # 12 red cells, then 6 red and 6 blue
    histogram = colour_histogram(frames)
    assert histogram.shape == (COLOUR_LEVELS**3,) and histogram.dtype == np.float32
    red_bin, blue_bin = (3 * 4 + 0) * 4 + 0, (0 * 4 + 0) * 4 + 3
    assert histogram[red_bin] == pytest.approx(18 / 24) and histogram[blue_bin] == pytest.approx(6 / 24)
    assert histogram.sum() == pytest.approx(1.0)
    assert colour_histogram(np.zeros((0, 36), np.float32)).sum() == 0
    # Another framing of the same colours (cells moved about, one frame more): the same histogram.
    np.testing.assert_array_equal(colour_histogram(layout(BLUE, RED)), colour_histogram(layout(RED, BLUE)))
    np.testing.assert_array_equal(colour_histogram(np.concatenate([layout(RED, BLUE)] * 3)), colour_histogram(layout(BLUE, RED)))


def test_shot_similarity_fuses_cosine_and_colour_and_falls_back_to_the_cosine() -> None:
    e = unit(A, place(0.4, 4), A)
    h = np.stack([colour_histogram(layout(RED)), colour_histogram(layout(RED, BLUE)), np.zeros(COLOUR_LEVELS**3)])
    similarity = shot_similarity(e, h, 0.5)
    assert similarity[0, 1] == pytest.approx(0.5 * 0.4 + 0.5 * 0.5)
    assert similarity[0, 0] == pytest.approx(1.0) and similarity[1, 1] == pytest.approx(1.0)
    # The third shot has no histogram: compared by its cosine alone.
    assert similarity[0, 2] == pytest.approx(1.0) and similarity[1, 2] == pytest.approx(0.4)
    np.testing.assert_allclose(shot_similarity(e, None, 0.5), e @ e.T)
    np.testing.assert_allclose(shot_similarity(e, h, 0.0), e @ e.T)
    np.testing.assert_allclose(attention_cohesion(e @ e.T, 3, 0.02, 0.45), boundary_cohesion(e, 3, 0.02, 0.45))


#: A setting that leans on colour (the defaults give it 0.05: on the development sets the
#: centred embeddings tell most look-alikes apart, and colour differs within places too).
COLOUR = ScenesConfig(threshold=0.15, reference_cosine=0.55, colour_weight=0.25)


def test_two_places_alike_to_the_embedding_but_not_in_colour_are_two_scenes() -> None:
    # Two car parks seen from above: the embedding cannot tell them apart, their colours can.
    e = unit(A, A, A, A, A)
    h = np.stack([colour_histogram(layout(c)) for c in (GREY, GREY, GREY, BROWN, BROWN)])
    assert scene_ranges(e, COLOUR) == [(0, 4)]
    assert scene_ranges(e, COLOUR, h) == [(0, 2), (3, 4)]
    # A little colour does not outweigh embeddings this alike.
    assert scene_ranges(e, DEFAULTS, h) == [(0, 4)]


def test_one_place_under_changing_framing_stays_one_scene() -> None:
    # Wide, close-up, wide again of one room: the embeddings are less alike than the reference
    # (alone they split the last shot off), the colours are the same cells moved about.
    e = unit(A, place(0.42, 4), place(0.4, 5))
    h = np.stack([colour_histogram(layout(*c)) for c in ((RED, GREY, BLUE), (GREY, RED, BLUE), (BLUE, RED, GREY))])
    assert scene_ranges(e, COLOUR) == [(0, 0), (1, 1), (2, 2)]
    assert scene_ranges(e, COLOUR, h) == [(0, 2)]
    # The next place, little alike to the embedding, in other colours: a new scene.
    e4 = unit(A, place(0.42, 4), place(0.4, 5), place(0.3, 3))
    h4 = np.concatenate([h, colour_histogram(layout(BROWN, (20.0, 160.0, 40.0)))[None]])
    assert scene_ranges(e4, COLOUR, h4) == [(0, 2), (3, 3)]


def test_similarity_fused_only_within_reach_is_the_full_one_there() -> None:
    rng = np.random.default_rng(3)
    e = normalise(rng.normal(size=(9, 6)))
    h = rng.dirichlet(np.ones(COLOUR_LEVELS**3), size=9)
    h[4] = 0  # a shot without a histogram
    full, near = shot_similarity(e, h, 0.3), shot_similarity(e, h, 0.3, max_distance=3)
    apart = np.abs(np.subtract.outer(np.arange(9), np.arange(9)))
    np.testing.assert_allclose(near[apart <= 3], full[apart <= 3])
    np.testing.assert_allclose(near[apart > 3], (e @ e.T)[apart > 3])
    expected = 0.7 * float(e[0] @ e[2]) + 0.3 * float(np.minimum(h[0], h[2]).sum())
    assert full[0, 2] == pytest.approx(expected) and full[2, 0] == pytest.approx(expected)
    assert full[0, 4] == pytest.approx(float(e[0] @ e[4]))


# --- embeddings less the centre of their space ---------------------------------------------

from pipeline.algorithms.embedding_centre import EMBEDDING_CENTRE  # noqa: E402
from pipeline.algorithms.scenes import centred  # noqa: E402

#: The settings chosen before the centre, plain cosines and more colour: on all three sets,
#: and earlier on two.
PLAIN = ScenesConfig(threshold=0.25, reference_cosine=0.5, colour_weight=0.1, centre_embeddings=False)
PLAIN_TWO_SETS = ScenesConfig(threshold=0.15, reference_cosine=0.55, colour_weight=0.25, centre_embeddings=False)


def directions(count: int) -> np.ndarray:
    """``count`` orthonormal directions of the embedding space, all orthogonal to the centre."""
    centre = EMBEDDING_CENTRE.astype(np.float64)
    basis, _ = np.linalg.qr(np.column_stack([centre, np.random.default_rng(7).normal(size=(len(centre), count))]))
    return basis[:, 1:].T


DIRECTIONS = directions(8)


def embedding(generic: float, place: int, place_weight: float, own: int, own_weight: float) -> list[float]:
    """A unit-norm 1280-wide shot embedding: ``generic`` times the centre (what every frame
    shares with every other) plus its place's direction and its own."""
    vector = generic * EMBEDDING_CENTRE.astype(np.float64) + place_weight * DIRECTIONS[place] + own_weight * DIRECTIONS[own]
    return list(vector / np.linalg.norm(vector))


def test_centred_embeddings_are_unit_norm_and_keep_shots_without_one_at_zero() -> None:
    # The centre plus equal parts of a shared place and each shot's own: unit norm as it is.
    shared = float(EMBEDDING_CENTRE.astype(np.float64) @ EMBEDDING_CENTRE)
    weight = math.sqrt((1 - shared) / 2)
    e = np.array([embedding(1.0, 0, weight, 1, weight), [0.0] * len(EMBEDDING_CENTRE), embedding(1.0, 0, weight, 2, weight)])
    moved = centred(e)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), [1.0, 0.0, 1.0])
    # Less the centre, only the place and the shots' own directions remain: cosine 0.5; plain,
    # the centre adds its squared norm (0.35) to every pair.
    assert float(e[0] @ e[2]) == pytest.approx(0.5 + shared / 2)
    assert float(moved[0] @ moved[2]) == pytest.approx(0.5)
    # Embeddings of another width are not the network's: compared as they are.
    np.testing.assert_allclose(centred(unit(A, X)), unit(A, X))


def test_look_alike_rooms_of_a_low_resolution_video_are_two_scenes() -> None:
    # Two rooms, two shots each, of a 240p source whose look every shot shares: plain cosines
    # 0.67 across the rooms and 0.76 within; less the centre, 0.13 across and 0.36 within.
    e = np.array([embedding(1.4, 0, 0.3, 2, 0.5), embedding(1.4, 0, 0.3, 3, 0.5),
                  embedding(1.4, 1, 0.3, 4, 0.5), embedding(1.4, 1, 0.3, 5, 0.5)])
    assert float(e[1] @ e[2]) == pytest.approx(0.67, abs=0.01)
    assert scene_ranges(e, DEFAULTS) == [(0, 1), (2, 3)]
    assert scene_ranges(e, PLAIN) == [(0, 3)]
    assert scene_ranges(e, PLAIN_TWO_SETS) == [(0, 3)]
    assert scene_ranges(e, dataclasses.replace(DEFAULTS, centre_embeddings=False)) == [(0, 3)]


def test_varied_shots_of_one_place_stay_one_scene() -> None:
    # Close-ups of one place, each of something else: 0.37 alike by the plain cosine, below
    # the plain rule's reference, so it split every shot; less the centre 0.32, above the
    # centred rule's.
    e = np.array([embedding(0.6, 0, 0.5, 5, 0.8), embedding(0.6, 0, 0.5, 6, 0.8), embedding(0.6, 0, 0.5, 7, 0.8)])
    assert float(e[0] @ e[1]) == pytest.approx(0.37, abs=0.01)
    assert scene_ranges(e, DEFAULTS) == [(0, 2)]
    assert scene_ranges(e, PLAIN) == [(0, 0), (1, 1), (2, 2)]
    assert scene_ranges(e, PLAIN_TWO_SETS) == [(0, 0), (1, 1), (2, 2)]


# --- the within-scene directions shrunk ------------------------------------------------------

from pipeline.algorithms.within_scene import (  # noqa: E402
    FIT_DIRECTIONS,
    FIT_STRENGTH,
    WithinScene,
    fit_within_scene,
    shrink_within_scene,
    within_scene,
)

UNSHRUNK = dataclasses.replace(DEFAULTS, shrink_within_scene=False)


def test_the_committed_within_scene_directions_are_orthonormal_and_shrunk_most_first() -> None:
    fitted = within_scene()
    assert fitted.directions.shape == (FIT_DIRECTIONS, len(EMBEDDING_CENTRE))
    # Stored as float16: orthonormal to that precision.
    np.testing.assert_allclose(fitted.directions @ fitted.directions.T, np.eye(FIT_DIRECTIONS), atol=2e-3)
    assert np.all(np.diff(fitted.shrink) <= 0) and 0 < fitted.shrink[-1] and fitted.shrink[0] < 1
    # The largest direction is shrunk to sqrt(strength / (1 + strength)) of itself.
    assert fitted.shrink[0] == pytest.approx(1 - math.sqrt(FIT_STRENGTH / (1 + FIT_STRENGTH)), abs=1e-6)
    assert fitted.strength == FIT_STRENGTH and "scenes_set2" in fitted.described
    assert fitted.digest() == within_scene().digest() and len(fitted.digest()) == 16


def test_shrinking_moves_only_the_fitted_directions_and_keeps_empty_and_foreign_rows() -> None:
    one = WithinScene(directions=np.array([[0.0, 1.0, 0.0]]), shrink=np.array([0.5]), strength=1.0, described="test")
    vectors = normalise(np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    moved = shrink_within_scene(vectors, one)
    # Half of each row's component along the direction is taken away, then the row is unit again.
    np.testing.assert_allclose(moved[0], normalise(np.array([1.0, 0.5, 0.0])))
    assert float(moved[0] @ moved[1]) == pytest.approx(0.6)  # (1 - 0.25) / 1.25; 0 before
    np.testing.assert_allclose(moved[2:], vectors[2:])  # no embedding; nothing along the direction
    np.testing.assert_allclose(shrink_within_scene(unit(A, X), one), unit(A, X))  # another width


def test_fitting_shrinks_the_direction_a_scene_varies_in_most() -> None:
    rng = np.random.default_rng(3)
    deviations = np.column_stack([rng.normal(0, 1.0, 400), rng.normal(0, 0.3, 400), np.zeros(400)])
    directions, shrink = fit_within_scene(deviations, strength=0.5, keep=2)
    assert abs(directions[0, 0]) == pytest.approx(1.0, abs=0.01)
    assert shrink[0] == pytest.approx(1 - math.sqrt(0.5 / 1.5))
    assert shrink[1] == pytest.approx(1 - math.sqrt(0.5 / (0.09 + 0.5)), abs=0.02)


def within_scene_embedding(place_direction: np.ndarray, along: float, direction: np.ndarray) -> np.ndarray:
    """A unit-norm 1280-wide shot embedding: the centre, plus its place's direction and
    ``along`` times a within-scene ``direction`` (both orthogonal to the centre)."""
    part = place_direction + along * direction
    part *= math.sqrt(1 - float(EMBEDDING_CENTRE.astype(np.float64) @ EMBEDDING_CENTRE)) / np.linalg.norm(part)
    return EMBEDDING_CENTRE.astype(np.float64) + part


def test_two_framings_of_one_place_stay_one_scene_once_their_difference_is_shrunk() -> None:
    # Two shots of one place far apart along the direction one scene's shots vary in most (a
    # zoom, another framing): centred cosine -0.15, below the reference, so without shrinking
    # they are two scenes; shrunk, 0.76 alike, above it. A third place stays its own scene.
    centre = normalise(EMBEDDING_CENTRE.astype(np.float64))
    fitted = within_scene()
    spread = fitted.directions[0] - (fitted.directions[0] @ centre) * centre
    spread /= np.linalg.norm(spread)
    places = directions(3)
    places = [v - fitted.directions.T @ (fitted.directions @ v) for v in places]  # nothing along the fitted ones
    places = [v - (v @ centre) * centre for v in places]
    e = np.array([within_scene_embedding(places[0], 1.1, spread), within_scene_embedding(places[0], -1.1, spread),
                  within_scene_embedding(places[1], 0.0, spread)])
    plain_cos = normalise(e - EMBEDDING_CENTRE)
    assert float(plain_cos[0] @ plain_cos[1]) == pytest.approx(-0.15, abs=0.03)
    shrunk = shrink_within_scene(plain_cos)
    assert float(shrunk[0] @ shrunk[1]) == pytest.approx(0.76, abs=0.03)
    assert scene_ranges(e, UNSHRUNK) == [(0, 0), (1, 1), (2, 2)]
    assert scene_ranges(e, DEFAULTS) == [(0, 1), (2, 2)]
    # Shrinking needs the centred space: without the centre, the setting changes nothing.
    uncentred = dataclasses.replace(DEFAULTS, centre_embeddings=False)
    assert scene_ranges(e, uncentred) == scene_ranges(e, dataclasses.replace(uncentred, shrink_within_scene=False))
