"""``inference.precision: auto`` on a CPU: each network's precision chosen by measuring this
machine, once, and remembered.

Which precision runs fastest depends on the CPU and on torch: int8 convolutions want VNNI,
bf16 is fast only with AVX512-BF16 or AMX (torch emulates it elsewhere, several times slower
than float32), and a torch upgrade moves the kernels. So the first model actor on a kind of
machine runs each network's candidates on a small generated input (no data files),

* the shot network (TransNetV2): ``fp32``, ``bf16`` (autocast), ``int8`` (convolution blocks in
  int8, :mod:`pipeline.models.quantized`), ``int8+bf16`` (the same, its other layers under bf16
  autocast);
* the embedding network (EfficientNet-Lite0): ``fp32``, ``bf16``;

checks each against float32 within the tolerances below, and keeps the fastest one allowed
(a reduced precision only where it is at least :data:`MIN_SPEEDUP` times as fast as float32:
it must earn its small loss of accuracy, and timings on a busy machine wobble). On a CPU
without native bf16 (AVX512-BF16 or AMX) the bf16 candidates are not measured: torch emulates
bf16 there, and it ran 1.5-5x slower than float32 (``benchmarks/calibration.py --all``,
``docs/precision.md``), so measuring them would only lengthen every first start.
The choice is written as JSON in the user's cache folder
(``$XDG_CACHE_HOME/vindex/precision``), under a key made of the CPU model, the instruction-set
extensions that matter, any cap put on them, torch's version, its threads, the candidates and
:data:`CALIBRATION_VERSION`: a new kind of machine, a new torch or new candidates measure
again; the same ones read the file. Actors starting together on one node take a file lock:
one measures (two at once would each see half the cores and time nothing right), the others
wait and read what it wrote; the file is written whole, to a temporary file renamed over it.

The tolerances (also in ``docs/precision.md``):

* shot network: transition probabilities (both heads) within
  :data:`SHOT_MAX_PROBABILITY_DIFFERENCE` of float32 on every frame, and the same frames at
  or above :data:`SHOT_CUT_THRESHOLD` (the cuts the network predicts);
* embedding network: each frame's embedding at cosine :data:`EMBED_MIN_COSINE` or more to
  its float32 embedding.

Nothing here runs on a GPU: there ``auto`` keeps its fixed rule (float16 autocast).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import errno
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.cache import cache_dir as vindex_cache
from pipeline.models.machine import ISA_FLAGS, cpu_model_and_flags

log = logging.getLogger(__name__)

#: Bumped when what is measured or how changes, so every machine measures again.
CALIBRATION_VERSION: Final[int] = 1
#: The shot network's candidates, float32 (the reference) first.
SHOT_CANDIDATES: Final[tuple[str, ...]] = ("fp32", "bf16", "int8", "int8+bf16")
#: The embedding network's candidates, float32 (the reference) first.
EMBED_CANDIDATES: Final[tuple[str, ...]] = ("fp32", "bf16")
#: Largest difference of a transition probability (either head, any frame) from float32. The
#: tests of the bf16 and int8 networks hold them to the same bound on a clip with a cut.
SHOT_MAX_PROBABILITY_DIFFERENCE: Final[float] = 0.1
#: A frame at or above this single-frame probability is a predicted cut (the default
#: ``shots.threshold``); a candidate must predict the same ones as float32.
SHOT_CUT_THRESHOLD: Final[float] = 0.5
#: Smallest cosine of a frame's embedding to its float32 embedding.
EMBED_MIN_COSINE: Final[float] = 0.99

#: The shot network's calibration input: one window of 25 context frames, 50 frames whose
#: probabilities count, 25 context frames. Its shots and transitions (shot lengths, then
#: transitions between them) put a cut, a dissolve and a cut among the 50 frames.
SHOT_WINDOW_FRAMES: Final[int] = 100
_SHOT_CLIP_SHOTS: Final[tuple[int, ...]] = (35, 15, 10, 32)
_SHOT_CLIP_TRANSITIONS: Final[tuple[str, ...]] = ("cut", "dissolve:8", "cut")
#: Generated frames' size: the pipeline's default decode size (the embedding network's input).
FRAME_WIDTH, FRAME_HEIGHT = 256, 144
#: Frames the embedding network embeds per pass (its CPU batch), every 6th of the clip.
EMBED_FRAMES: Final[int] = 16
#: A reduced precision is chosen only where it is at least this many times as fast as float32.
MIN_SPEEDUP: Final[float] = 1.1
#: Why the bf16 candidates are not measured on a CPU without native bf16.
NO_NATIVE_BF16 = "no native bf16 on this CPU (AVX512-BF16/AMX): torch emulates it, slower than float32"
#: A candidate is timed again only while its fastest pass is under this many times the fastest
#: candidate's: one that cannot win is not measured further. Before the first timed round the
#: first passes are compared, with a wider margin: they include one-off kernel set-up.
HOPELESS_RATIO: Final[float] = 2.0
FIRST_PASS_HOPELESS_RATIO: Final[float] = 3.0
#: Timed passes per candidate at most (after its first pass, which also checks its accuracy
#: and is not timed: it includes one-off kernel set-up, 4x a later int8 pass).
TIMED_PASSES: Final[int] = 3
#: Timed rounds stop once one network's calibration has run this long (at least one is timed).
BUDGET_S: Final[float] = 6.0
#: How long an actor waits for another one on its node to finish calibrating.
LOCK_WAIT_S: Final[float] = 600.0
_LOCK_POLL_S: Final[float] = 0.2


@dataclass
class Candidate:
    """One way of running a network: ``run`` does one pass over the calibration input and
    returns the outputs compared with float32; None with ``unavailable`` saying why."""

    network: str
    name: str
    run: Callable[[], np.ndarray] | None
    unavailable: str = ""
    #: A remark on how it runs (e.g. bf16 emulated), printed in the table.
    remark: str = ""


@dataclass(frozen=True)
class Measured:
    """One candidate's row of the calibration table."""

    network: str
    name: str
    #: Frames per second of its fastest timed pass (of its first pass where it was not timed
    #: again); None where it did not run.
    frames_per_s: float | None
    #: Its difference from float32: the largest probability difference (shot network), or
    #: the smallest cosine (embedding network); None where it did not run.
    accuracy: float | None
    allowed: bool
    #: Why it is not allowed or was not timed, or how it runs.
    note: str = ""


@dataclass(frozen=True)
class Calibration:
    """Each network's chosen precision, and the table it was chosen from."""

    shot: str
    embed: str
    table: tuple[Measured, ...]
    key: dict[str, Any]
    #: Wall time the measuring took.
    seconds: float
    measured_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "shot": self.shot,
            "embed": self.embed,
            "seconds": round(self.seconds, 2),
            "measured_at": self.measured_at,
            "table": [dataclasses.asdict(row) for row in self.table],
        }

    @classmethod
    def from_json(cls, data: Any, key: dict[str, Any]) -> Calibration:
        """The calibration in ``data``, which must be for ``key``; ValueError where it is not
        one (a damaged or foreign file)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("key") != key:
            raise ValueError("written for another machine, torch or candidate list")
        if data.get("shot") not in SHOT_CANDIDATES or data.get("embed") not in EMBED_CANDIDATES:
            raise ValueError(f"unknown choice {data.get('shot')!r}/{data.get('embed')!r}")
        try:
            table = tuple(Measured(**row) for row in data["table"])
            return cls(data["shot"], data["embed"], table, key, float(data["seconds"]), str(data["measured_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete: {exc}") from exc


# --- the machine and the cache -----------------------------------------------------------


def machine_key(threads: int | None = None) -> dict[str, Any]:
    """What a calibration holds for: the CPU, the extensions that matter and any cap on them,
    torch and its threads, the candidates and :data:`CALIBRATION_VERSION`."""
    import torch

    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if threads is None else threads,
        "shot_candidates": list(SHOT_CANDIDATES),
        "embed_candidates": list(EMBED_CANDIDATES),
        "version": CALIBRATION_VERSION,
    }


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vindex/precision`` (``~/.cache`` without it)."""
    return vindex_cache("precision")


def cache_path(key: dict[str, Any]) -> Path:
    """The file holding the calibration for ``key``: one per key, named by its hash."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"calibration-{digest}.json"


def read_cached(path: Path, key: dict[str, Any]) -> Calibration | None:
    """The calibration stored at ``path``; None where there is none, and (with a warning)
    where the file is damaged or not for ``key``: the caller measures again."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the precision calibration %s (%s); measuring again", path, exc)
        return None
    try:
        return Calibration.from_json(json.loads(text), key)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        log.warning("the precision calibration %s is unusable (%s); measuring again", path, str(exc)[:200])
        return None


def write_cached(path: Path, calibration: Calibration) -> None:
    """Write ``calibration`` to ``path`` whole: a temporary file beside it, renamed over it,
    so a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(calibration.to_json(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def calibration_lock(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` + ``.lock`` while inside; yields False where it was
    not had within ``wait_s`` (or locks are not supported here), True otherwise."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock_file:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    log.warning("cannot lock %s (%s); calibrating without the lock", lock_file.name, exc)
                    yield False
                    return
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(_LOCK_POLL_S)
        try:
            yield True
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


# --- measuring ---------------------------------------------------------------------------


def shot_agreement(reference: np.ndarray, output: np.ndarray) -> tuple[float, str]:
    """(largest probability difference, why not allowed or "") of shot-network outputs
    ``[2, frames]`` (single-frame head, many-hot head) against float32's."""
    difference = float(np.abs(output - reference).max())
    if difference > SHOT_MAX_PROBABILITY_DIFFERENCE:
        return difference, f"probabilities differ by {difference:.3f} > {SHOT_MAX_PROBABILITY_DIFFERENCE}"
    cuts, reference_cuts = (np.flatnonzero(o[0] >= SHOT_CUT_THRESHOLD).tolist() for o in (output, reference))
    if cuts != reference_cuts:
        return difference, f"cuts at frames {cuts}, float32 at {reference_cuts}"
    return difference, ""


def embed_agreement(reference: np.ndarray, output: np.ndarray) -> tuple[float, str]:
    """(smallest cosine, why not allowed or "") of L2-normalised embeddings ``[frames, D]``
    against float32's."""
    cosine = float((output.astype(np.float64) * reference).sum(axis=1).min())
    if not cosine >= EMBED_MIN_COSINE:  # NaN too
        return cosine, f"cosine to float32 {cosine:.4f} < {EMBED_MIN_COSINE}"
    return cosine, ""


def measure_network(
    candidates: Sequence[Candidate],
    frames: int,
    agreement: Callable[[np.ndarray, np.ndarray], tuple[float, str]],
    *,
    clock: Callable[[], float] = time.perf_counter,
    budget_s: float = BUDGET_S,
) -> list[Measured]:
    """One network's table: each candidate's first pass checked against the first candidate's
    (float32, always allowed), then timed passes in interleaved rounds (so load from other
    processes weighs on all alike) while they can still win and the budget lasts; each
    candidate's fastest pass counts. ``frames``: frames one pass handles."""
    reference = candidates[0]
    if reference.run is None:
        raise ValueError(f"the reference {reference.network} candidate {reference.name} cannot run")
    runs = {c.name: c.run for c in candidates if c.run is not None}
    if len(runs) == 1:  # nothing to choose between: nothing to measure
        only = Measured(reference.network, reference.name, None, 0.0, True, "the only candidate: not measured")
        return [only] + [Measured(c.network, c.name, None, None, False, c.unavailable) for c in candidates[1:]]
    started = clock()
    outputs: dict[str, np.ndarray] = {}
    best: dict[str, float] = {}  # fastest pass so far, seconds
    timed: dict[str, int] = {}
    rows: dict[str, Measured] = {}
    for candidate in candidates:
        if candidate.run is None:
            rows[candidate.name] = Measured(candidate.network, candidate.name, None, None, False, candidate.unavailable)
            continue
        begun = clock()
        try:
            outputs[candidate.name] = candidate.run()
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
            if candidate is reference:
                raise
            note = f"failed: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
            rows[candidate.name] = Measured(candidate.network, candidate.name, None, None, False, note)
            continue
        best[candidate.name] = clock() - begun
        timed[candidate.name] = 0
    accuracy = {
        name: agreement(outputs[reference.name], output) if name != reference.name else (0.0, "")
        for name, output in outputs.items()
    }
    racing = [name for name in outputs if not accuracy[name][1]]  # the allowed ones
    for round_index in range(TIMED_PASSES):
        ratio = FIRST_PASS_HOPELESS_RATIO if round_index == 0 else HOPELESS_RATIO
        fastest = min(best[name] for name in racing)
        racing = [name for name in racing if best[name] <= ratio * fastest]
        if len(racing) == 1 and timed[racing[0]] > 0:
            break
        for name in racing:
            begun = clock()
            runs[name]()
            best[name] = min(best[name], clock() - begun)
            timed[name] += 1
        if clock() - started >= budget_s:
            break
    for candidate in candidates:
        name = candidate.name
        if name in rows:
            continue
        difference, refused = accuracy[name]
        notes = [refused] if refused else []
        if not refused and timed[name] == 0:
            notes.append("first pass only (kernel set-up included): too slow to win")
        if candidate.remark:
            notes.append(candidate.remark)
        rows[name] = Measured(candidate.network, name, frames / best[name], difference, not refused, "; ".join(notes))
    return [rows[c.name] for c in candidates]


def fastest_allowed(table: Sequence[Measured], min_speedup: float = MIN_SPEEDUP) -> str:
    """The allowed candidate with the most frames per second, where it is at least
    ``min_speedup`` times as fast as the reference (the first row, always allowed); else the
    reference."""
    reference = table[0]
    allowed = [row for row in table if row.allowed and row.frames_per_s is not None]
    if not allowed:
        return reference.name
    fastest = max(allowed, key=lambda row: row.frames_per_s or 0.0)
    if reference.frames_per_s is not None and (fastest.frames_per_s or 0.0) < min_speedup * reference.frames_per_s:
        return reference.name
    return fastest.name


# --- the two networks --------------------------------------------------------------------


def calibration_clip() -> np.ndarray:
    """uint8 RGB ``[100, 144, 256, 3]``: a generated clip, the same on every machine, with a
    cut, a dissolve and a cut among its middle 50 frames."""
    from pipeline.synthetic import render_clip, simple_spec

    spec = simple_spec(
        list(_SHOT_CLIP_SHOTS), list(_SHOT_CLIP_TRANSITIONS), width=FRAME_WIDTH, height=FRAME_HEIGHT, seed=7
    )
    return np.stack(list(render_clip(spec)))


def bf16_skipped(emulated_bf16: bool) -> str:
    """Why the bf16 candidates are not measured on this CPU, or "" where they are."""
    from pipeline.models.inference import cpu_has_bf16

    return "" if emulated_bf16 or cpu_has_bf16() else NO_NATIVE_BF16


def bf16_remark() -> str:
    """How bf16 runs on this CPU, for the table."""
    from pipeline.models.inference import cpu_has_bf16

    return "" if cpu_has_bf16() else "emulated: no native bf16 on this CPU"


def shot_candidates(model: Any, clip: np.ndarray, *, emulated_bf16: bool = False) -> list[Candidate]:
    """The shot network's candidates on a CPU, each a pass over one window of ``clip``; the
    bf16 ones only where the CPU has native bf16, or ``emulated_bf16``."""
    import torch

    from pipeline.media.decode import to_shot_input
    from pipeline.models.inference import INT8_WITH_BF16, predict_transitions, prepare_for_inference
    from pipeline.models.quantized import Int8TransNetV2, quantize_or_keep, quantized_engine

    cpu = torch.device("cpu")
    frames = to_shot_input(torch.from_numpy(clip)).numpy()

    def runner(network: Any, precision: str) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            single, many = predict_transitions(
                network, frames, window=SHOT_WINDOW_FRAMES, batch_windows=1, device=cpu, precision=precision
            )
            return np.stack([single, many])

        return run

    no_bf16 = bf16_skipped(emulated_bf16)
    candidates = [Candidate("shot", "fp32", runner(model, "fp32"))]
    if no_bf16:
        candidates.append(Candidate("shot", "bf16", None, no_bf16))
    else:
        bf16_model = prepare_for_inference(copy.deepcopy(model), cpu, "bf16")
        candidates.append(Candidate("shot", "bf16", runner(bf16_model, "bf16"), remark=bf16_remark()))
    no_int8 = "this torch build has no quantized CPU kernels" if quantized_engine() is None else None
    quantized: Any = None
    if no_int8 is None:
        quantized, no_int8 = quantize_or_keep(model)
    if no_int8 is not None or not isinstance(quantized, Int8TransNetV2):
        return candidates + [Candidate("shot", name, None, no_int8 or "") for name in ("int8", INT8_WITH_BF16)]
    candidates.append(Candidate("shot", "int8", runner(quantized, "int8")))
    if no_bf16:
        candidates.append(Candidate("shot", INT8_WITH_BF16, None, no_bf16))
    else:
        with_bf16 = Int8TransNetV2(quantized.network, float_autocast=True)  # the same int8 blocks
        candidates.append(Candidate("shot", INT8_WITH_BF16, runner(with_bf16, INT8_WITH_BF16), remark=bf16_remark()))
    return candidates


def embed_candidates(model: Any, clip: np.ndarray, *, emulated_bf16: bool = False) -> list[Candidate]:
    """The embedding network's candidates on a CPU, each a pass over frames of ``clip``; bf16
    only where the CPU has native bf16, or ``emulated_bf16``."""
    import torch

    from pipeline.models.inference import embed_frames

    cpu = torch.device("cpu")
    frames = np.ascontiguousarray(clip[::6][:EMBED_FRAMES])

    def runner(precision: str) -> Callable[[], np.ndarray]:
        return lambda: embed_frames(model, frames, batch_size=EMBED_FRAMES, device=cpu, precision=precision)

    no_bf16 = bf16_skipped(emulated_bf16)
    bf16 = Candidate("embed", "bf16", None, no_bf16) if no_bf16 else Candidate("embed", "bf16", runner("bf16"), remark=bf16_remark())
    return [Candidate("embed", "fp32", runner("fp32")), bf16]


def calibrate(shot_model: Any, embed_model: Any, key: dict[str, Any], *, emulated_bf16: bool = False) -> Calibration:
    """Measure both networks' candidates on this machine (float models on the CPU in); the
    bf16 ones on a CPU without native bf16 too where ``emulated_bf16``."""
    import torch

    started = time.perf_counter()
    clip = calibration_clip()
    middle = SHOT_WINDOW_FRAMES - 2 * 25
    with torch.inference_mode():
        shot = measure_network(shot_candidates(shot_model, clip, emulated_bf16=emulated_bf16), middle, shot_agreement)
        embed = measure_network(
            embed_candidates(embed_model, clip, emulated_bf16=emulated_bf16), EMBED_FRAMES, embed_agreement
        )
    return Calibration(
        fastest_allowed(shot),
        fastest_allowed(embed),
        tuple(shot + embed),
        key,
        time.perf_counter() - started,
        datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def format_table(calibration: Calibration) -> str:
    """The calibration as a table: candidate, frames/s, accuracy vs float32, allowed, chosen."""
    lines = [f"{'network':<7} {'candidate':<10} {'frames/s':>9} {'vs fp32':>8} {'allowed':<7} {'chosen':<6} note"]
    for row in calibration.table:
        chosen = row.name == (calibration.shot if row.network == "shot" else calibration.embed)
        rate = f"{row.frames_per_s:9.1f}" if row.frames_per_s is not None else f"{'-':>9}"
        accuracy = f"{row.accuracy:8.4f}" if row.accuracy is not None else f"{'-':>8}"
        lines.append(
            f"{row.network:<7} {row.name:<10} {rate} {accuracy} {'yes' if row.allowed else 'no':<7} "
            f"{'*' if chosen else '':<6} {row.note}".rstrip()
        )
    lines.append("(vs fp32: the shot network's largest probability difference, the embedding network's smallest cosine)")
    return "\n".join(lines)


def calibrated(
    shot_model: Any,
    embed_model: Any,
    *,
    measure: Callable[[Any, Any, dict[str, Any]], Calibration] = calibrate,
    key: dict[str, Any] | None = None,
    wait_s: float = LOCK_WAIT_S,
) -> Calibration | None:
    """This machine's calibration (``key``: :func:`machine_key`): read from the cache, or
    measured (under the node's lock) and written there. None where another process held the
    lock past ``wait_s``."""
    key = machine_key() if key is None else key
    path = cache_path(key)
    found = read_cached(path, key)
    if found is not None:
        return found
    with calibration_lock(path, wait_s) as locked:
        if not locked:
            log.warning(
                "another process has been calibrating precision for %.0f s (%s); "
                "inference.precision auto keeps its fixed rule",
                wait_s,
                path,
            )
            return None
        found = read_cached(path, key)  # written while this one waited
        if found is not None:
            return found
        calibration = measure(shot_model, embed_model, key)
        log.info(
            "inference.precision auto: measured this CPU in %.1f s (%s, torch %s, %s threads):\n%s",
            calibration.seconds,
            key.get("cpu"),
            key.get("torch"),
            key.get("threads"),
            format_table(calibration),
        )
        try:
            write_cached(path, calibration)
        except OSError as exc:
            log.warning("cannot write the precision calibration to %s (%s); it is measured again next time", path, exc)
        return calibration


def network_precisions(
    device: Any, precision: str, *, calibrate_cpu: bool, shot_model: Any, embed_model: Any
) -> tuple[str, str]:
    """What each network runs in, (shot, embedding), for the ``inference.precision`` setting
    on ``device``: the setting itself for both, except "auto" on a CPU with calibration on,
    which becomes the measured choice (the setting itself again where none could be had)."""
    if precision != "auto" or device.type != "cpu" or not calibrate_cpu:
        return precision, precision
    calibration = calibrated(shot_model, embed_model)
    if calibration is None:
        return precision, precision
    log.info(
        "inference.precision auto: the shot network runs in %s, the embedding network in %s "
        "(measured fastest within tolerance on %s, %s)",
        calibration.shot,
        calibration.embed,
        calibration.key.get("cpu"),
        calibration.measured_at,
    )
    return calibration.shot, calibration.embed


__all__ = [
    "CALIBRATION_VERSION",
    "EMBED_CANDIDATES",
    "EMBED_MIN_COSINE",
    "SHOT_CANDIDATES",
    "SHOT_CUT_THRESHOLD",
    "SHOT_MAX_PROBABILITY_DIFFERENCE",
    "Calibration",
    "Candidate",
    "Measured",
    "cache_dir",
    "cache_path",
    "calibrate",
    "calibrated",
    "calibration_clip",
    "calibration_lock",
    "embed_agreement",
    "embed_candidates",
    "fastest_allowed",
    "format_table",
    "machine_key",
    "measure_network",
    "network_precisions",
    "read_cached",
    "shot_agreement",
    "shot_candidates",
    "write_cached",
]
