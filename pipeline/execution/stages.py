"""The pipeline's stages: plan (probe + split), decode, models.

A stage loads what it needs once per worker in ``setup()`` and turns one
:class:`~pipeline.execution.records.SegmentRecord` into zero or more in ``process()``. It
knows nothing of Ray: :mod:`pipeline.execution.adapter` decides how Ray runs it, and tests
call it directly. Calling a stage applies the failure rule: a ``VideoError`` becomes the
video's one failure record, and a record that already failed passes through untouched, so a
bad video always reaches the driver as exactly one failure.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import numpy as np

from pipeline.config import Config
from pipeline.algorithms.segments import Segment, decode_size, frames_to_decode, plan_segments
from pipeline.media.probe import probe
from pipeline.media.spans import NO_SPAN, PlannedSpan, SpanIndex, span_bounds
from pipeline.execution import timeline
from pipeline.execution.pools import torch_threads
from pipeline.errors import DecodeError, ModelError, ProbeError, VideoError

from pipeline.execution.records import SegmentRecord, failed, pack, pack_measures, unpack

log = logging.getLogger(__name__)

#: A video whose processing killed this many worker processes is failed instead of retried
#: again: a decoder that segfaults on a file must not take the run down with it.
MAX_WORKER_DEATHS = 2


_P = ParamSpec("_P")
_T = TypeVar("_T")


def on_own_thread(
    name: str, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> concurrent.futures.Future[_T]:
    """Start ``function(*args, **kwargs)`` on a thread of its own (named after ``name``), and
    return at once: the future holds what it returns or raises, and the thread ends with it."""
    starting = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
    future = starting.submit(function, *args, **kwargs)
    starting.shutdown(wait=False)
    return future


class AttemptCounter(Protocol):
    """Counts attempts at a unit of work across worker processes (see ``adapter.CrashGuard``)."""

    def begin(self, key: str) -> int:
        """Record an attempt at ``key``; how many earlier ones never ended (their worker died)."""

    def end(self, key: str) -> None:
        """The attempt at ``key`` finished, well or with a VideoError."""

    def unfinished(self, key: str) -> int:
        """Attempts at ``key`` begun and never ended (workers that died on it), recording nothing."""


class NoCrashGuard:
    """The counter of a stage called directly, outside Ray: no worker can die under it."""

    def begin(self, key: str) -> int:
        return 0

    def end(self, key: str) -> None:
        pass

    def unfinished(self, key: str) -> int:
        return 0


class Stage(abc.ABC):
    """One step of the pipeline; the adapter decides how Ray runs it."""

    name: str = "stage"
    #: Stateful stages (models to load) run on an actor pool; the rest as tasks.
    stateful: bool = False
    #: Calls one actor of the stage runs at once (threads); above 1 the stage must be
    #: thread-safe.
    concurrent_calls: int = 1

    #: The ``error_stage`` a video gets when this stage fails on it.
    error_type: type[VideoError] = VideoError

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.storage_options = storage_options
        self.crash_guard: AttemptCounter = NoCrashGuard()

    def guard_with(self, guard_for: Callable[[str], AttemptCounter]) -> None:
        """Count this stage's attempts with ``guard_for(name)``, so that a video that keeps
        killing its worker fails instead of being retried forever (set by the adapter)."""
        self.crash_guard = guard_for(self.name)

    def setup(self) -> None:
        """Load heavy state once per worker."""

    @abc.abstractmethod
    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        """One row in, zero or more rows out. Raise VideoError for a bad video."""

    def remake(self, plan: SegmentRecord) -> list[SegmentRecord]:
        """A planned segment taken through this stage and the ones before it (a last stage
        models a segment again that was lost with its node); stages that cannot, raise."""
        raise NotImplementedError(f"the {self.name} stage cannot make a segment again from its plan")

    def failure_rows(self, row: SegmentRecord, error: VideoError) -> list[SegmentRecord]:
        """What this stage returns for a row it failed on: the video's one failure record (a
        stage whose rows are not segments, as cutting clips, says its own)."""
        return [failed(row, error)]

    def died_on(self, row: SegmentRecord) -> bool:
        """Whether a worker process died while this stage worked on ``row``'s segment."""
        return self.crash_guard.unfinished(_attempt_key(row)) > 0

    def __call__(self, row: SegmentRecord) -> list[SegmentRecord]:
        if row.get("error_stage"):
            return [row]
        key = _attempt_key(row)
        try:
            deaths = self.crash_guard.begin(key)
            if deaths >= MAX_WORKER_DEATHS:
                raise self.error_type(
                    row["uri"],
                    f"the {self.name} worker process died {deaths} times on this video (a crash in "
                    "native code, or killed for memory); skipped",
                )
            return self.process(row)
        except VideoError as exc:
            log.warning("%s failed at %s: %s", row["uri"], exc.stage, exc.message)
            return self.failure_rows(row, exc)
        finally:
            self.crash_guard.end(key)


def _attempt_key(row: SegmentRecord) -> str:
    """What a crash guard counts attempts at: one segment of one video."""
    return f"{row['video_id']}/{row.get('segment_index') or 0}"


def in_ray_actor() -> bool:
    """Whether this process is a Ray actor's (not a driver, not a process without Ray)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def _assigned_cpus() -> float | None:
    """The CPUs Ray assigned to this actor, or None outside an actor (a driver, no Ray)."""
    import ray

    if not in_ray_actor():  # the driver: Ray assigns it nothing (and says so by raising)
        return None
    cpus: float | None = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return cpus


def _as_is(array: np.ndarray) -> np.ndarray:
    return array


def as_array(value: object) -> np.ndarray:
    """A frames column as an array: unpacked from ``.npy`` bytes, or the array itself (handed
    over within one actor, see ``DecodeStage.pack_frames``)."""
    return value if isinstance(value, np.ndarray) else unpack(cast(bytes, value))


@dataclass(frozen=True)
class LastVideo:
    """The video a run plans last, and how many segments the run's model actors take at once."""

    video_id: str
    calls: int


class PlanStage(Stage):
    """Probe container metadata and split each video into segments.

    A run's ``last`` video, where the model actors take two segments or more at once, has its
    last segments planned at half length (:func:`~pipeline.algorithms.segments.plan_segments`'s
    ``halve_last``): the actors then end the run within half a segment of each other instead
    of one idling while another runs a whole segment alone. Results do not change: segments
    start on the shot network's grid, so any cut gives the same rows.
    """

    name = "plan"
    error_type = ProbeError

    def __init__(
        self, config: Config, storage_options: dict[str, Any] | None = None, last: LastVideo | None = None
    ) -> None:
        super().__init__(config, storage_options)
        self.last = last

    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        if row.get("size_bytes") == 0:
            raise ProbeError(row["uri"], "empty object (0 bytes)")
        info = probe(row["location"], self.storage_options, max_frames=self.config.decode.max_frames)
        # Segments only for the frames the file holds: a truncated upload's header still
        # declares the whole video, and each segment past the break would fetch and decode the
        # file for nothing. The last segment runs to the true end (see plan_segments).
        halve_last = self.last.calls if self.last is not None and self.last.video_id == row["video_id"] else 0
        segments = plan_segments(
            info.num_frames,
            self.config.decode.segment_frames,
            held_frames=info.held_frames,
            halve_last=halve_last,
            step=self.config.shots.step,
        )
        width, height = decode_size(*info.display_size, self.config.decode.width, self.config.decode.height)
        base: SegmentRecord = {
            **row,
            "num_frames": info.num_frames,
            "fps": info.fps,
            "duration_s": info.duration_s,
            "width": info.width,
            "height": info.height,
            "codec": info.codec,
            "rotation": info.rotation,
            "decode_width": width,
            "decode_height": height,
            "segment_count": len(segments),
            "warnings": (["frame count estimated from duration"] if info.frames_estimated else [])
            + ([info.shortfall] if info.shortfall else []),
        }
        return [
            {
                **base,
                "segment_index": s.index,
                "start_frame": s.start_frame,
                "end_frame": s.end_frame,
                "span_first": planned_span(info.span_index, s).first,
                "span_frames": planned_span(info.span_index, s).frames,
            }
            for s in segments
        ]


def planned_span(index: SpanIndex | None, segment: Segment) -> PlannedSpan:
    """The packets ``segment`` decodes (its span), from the frame index probing read; NO_SPAN (the
    whole file) for a video of one segment or a container that does not index every frame."""
    if index is None or segment.count == 1:
        return NO_SPAN
    return span_bounds(index, *frames_to_decode(segment)) or NO_SPAN


def _span_of(row: SegmentRecord) -> PlannedSpan | None:
    """The span planned for ``row``'s segment; None for a row planned without one (a segment made
    again from another's plan): the decoder then finds it in the container's index."""
    first, frames = row.get("span_first"), row.get("span_frames")
    return None if first is None or frames is None else PlannedSpan(first, frames)


class DecodeStage(Stage):
    """Decode a segment once at model size; JPEG thumbnails of the sampled frames."""

    name = "decode"
    stateful = True
    error_type = DecodeError

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None) -> None:
        super().__init__(config, storage_options)
        self.decoded_any = False
        #: Whether the frames for the networks leave as ``.npy`` bytes (a record that travels
        #: through Ray) or as arrays (to the model stage of the same actor: no copy).
        self.pack_frames = True

    def setup(self) -> None:
        # Imported here, not at the top: decoding loads torch (about 1 s of a 2-core CPU's
        # start-up), which the driver, which only plans and stitches, never needs.
        import pipeline.media.decode  # noqa: F401

    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        from PIL import Image

        from pipeline.media.decode import decode_segment

        segment = Segment(row["segment_index"], row["segment_count"], row["start_frame"], row["end_frame"])
        decoded = decode_segment(
            row["location"],
            segment,
            self.config,
            self.storage_options,
            size=(row["decode_width"], row["decode_height"]),
            rotation=row["rotation"],
            planned=_span_of(row),
        )
        if not self.decoded_any:
            self.decoded_any = True
            timeline.mark(timeline.FIRST_FRAME_DECODED)
        thumbnails = []
        for frame in decoded.samples:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=self.config.embed.thumbnail_quality)
            thumbnails.append(buffer.getvalue())
        frames = pack if self.pack_frames else _as_is
        return [
            {
                **row,
                "decoded_frames": decoded.num_frames,
                "shot_input": frames(decoded.shot_frames),
                "samples": frames(decoded.samples),
                "sample_frames": pack(decoded.sample_frames),
                "frame_times": pack(decoded.frame_times),
                # A few bytes per frame: flashes in shots, black/flash/blurred keyframes, shot signals.
                "measures": pack_measures(decoded),
                "thumbnails": thumbnails,
                "warnings": (row.get("warnings") or []) + decoded.warnings,
            }
        ]


class ModelStage(Stage):
    """Shot-transition probabilities for every frame; embeddings of the sampled frames."""

    name = "models"
    stateful = True
    error_type = ModelError

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None) -> None:
        super().__init__(config, storage_options)
        #: Decodes a segment made again (:meth:`remake`); built the first time one is.
        self._decoder: DecodeStage | None = None
        #: What each network runs in: the setting, until :meth:`setup` resolves "auto".
        self.shot_precision = self.embed_precision = config.inference.precision
        #: Torch threads each call runs with (set by :meth:`setup`).
        self.call_threads = 1
        #: Torch threads the actor may use in all (:meth:`setup`); a call alone in the actor
        #: may take them all for the shot network where :attr:`before_each_shot_pass` says so.
        self.actor_threads = 1
        #: Called on the calling thread before each pass of the shot network: sets its torch
        #: threads. The embedding network always runs on :attr:`call_threads`.
        self.before_each_shot_pass: Callable[[], None] = self._use_call_threads
        #: Whether the shot network's outputs are the same on any number of threads (set by
        #: :meth:`setup`): its int8 network, whose convolutions sum integers. Float convolutions
        #: sum in an order that follows the threads (fp32 outputs differed between 1 and 2).
        self.shots_exact_on_any_threads = False

    def setup(self) -> None:
        import torch

        from pipeline.models.calibration import network_precisions
        from pipeline.models.efficientnet_lite import load_efficientnet_lite0
        from pipeline.models.inference import pick_device, prepare_for_inference
        from pipeline.models.quantized import Int8TransNetV2
        from pipeline.models.transnetv2 import load_transnetv2

        # Ray sets OMP_NUM_THREADS=1 in workers; a CPU model actor uses the CPUs it was given.
        self.call_threads = torch_threads(self.config.compute.model_threads, _assigned_cpus(), os.cpu_count() or 1)
        self.actor_threads = self.call_threads
        torch.set_num_threads(self.call_threads)
        self.device = pick_device(self.config.inference.device)
        inference = self.config.inference
        shot_model = load_transnetv2(self.device)
        self.embed_model = load_efficientnet_lite0(self.device, folded=True)
        # "auto" on a CPU: each network's precision as measured on this kind of machine (cached).
        self.shot_precision, self.embed_precision = network_precisions(
            self.device,
            inference.precision,
            calibrate_cpu=inference.calibrate,
            shot_model=shot_model,
            embed_model=self.embed_model,
        )
        self.shot_model = prepare_for_inference(
            shot_model, self.device, self.shot_precision, setting=inference.precision, embed_precision=self.embed_precision
        )
        self.shots_exact_on_any_threads = self.device.type == "cpu" and isinstance(self.shot_model, Int8TransNetV2)
        log.info("model stage on %s with %d threads", self.device, torch.get_num_threads())
        timeline.mark(timeline.WEIGHTS_LOADED)

    def one_thread_per_pass(self, most: int) -> int:
        """On a CPU, turn the threads this actor may use into passes through the networks run at
        once (at most ``most``), one thread each; returns how many. One pass on a GPU."""
        import torch

        if self.device.type != "cpu":
            return 1
        passes = max(1, min(most, self.call_threads))
        if passes > 1:
            self.call_threads = 1  # each pass runs on its own core
            torch.set_num_threads(1)
        return passes

    def _use_call_threads(self) -> None:
        """Give the calling thread the actor's torch threads per call."""
        self.use_threads(self.call_threads)

    def use_threads(self, threads: int) -> None:
        """Run the calling thread's network passes on ``threads`` torch threads (on a CPU).
        Torch keeps its thread count per thread once a thread has used it, and setup ran on a
        thread of its own (:class:`~pipeline.execution.adapter.StageActor`), not on the one
        that calls."""
        import torch

        if self.device.type == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def remake(self, plan: SegmentRecord) -> list[SegmentRecord]:
        if self._decoder is None:
            self._decoder = DecodeStage(self.config, self.storage_options)
            self._decoder.setup()
        return [out for decoded in self._decoder(plan) for out in self(decoded)]

    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        from pipeline.models.inference import embed_frames, predict_transitions

        out: SegmentRecord = {**row, "shot_input": None, "samples": None}
        if not row["decoded_frames"]:
            empty = pack(np.zeros(0, np.float32))
            return [{**out, "single": empty, "many": empty, "embeddings": pack(np.zeros((0, 0), np.float16))}]
        inference = self.config.inference
        try:
            single, many = predict_transitions(
                self.shot_model,
                as_array(row["shot_input"]),  # the decode stage filled it
                window=self.config.shots.window_frames,
                batch_windows=inference.shot_batch_windows,
                device=self.device,
                precision=self.shot_precision,
                before_each_pass=self.before_each_shot_pass,
            )
            embeddings = embed_frames(
                self.embed_model,
                as_array(row["samples"]),
                batch_size=inference.embed_batch_frames,
                device=self.device,
                precision=self.embed_precision,
                before_each_pass=self._use_call_threads,  # after a shot pass on more threads
            )
        except (RuntimeError, ValueError) as exc:  # e.g. CUDA out of memory on a huge segment
            raise ModelError(row["uri"], f"inference failed: {str(exc).splitlines()[0][:300]}") from exc
        count = row["decoded_frames"]
        return [
            {
                **out,
                "single": pack(single[:count]),
                "many": pack(many[:count]),
                "embeddings": pack(embeddings.astype(np.float16)),
            }
        ]


#: How long a segment must have been alone in a fused actor before its shot network's passes
#: take all the actor's threads: longer than Ray Data takes to hand a busy actor its next segment, so
#: that a segment does not widen in the gap between two and then share its cores with the
#: next one's decoding.
ALONE_BEFORE_WIDENING_S = 0.5


class DecodeAndModelStage(Stage):
    """Decoding and both networks in one actor, for clusters without GPUs.

    On CPUs the networks set the pace and share the cores with decoding either way, so a
    separate decode pool buys no throughput; it costs a second process's working set alive
    at the same time and a trip through the object store for every segment. Each step keeps
    its own failure stage (``decode`` or ``models``) and its own crash guard.

    Two segments are in the actor at once, one decoding while the other is in the networks
    (a lock for decoding): decoding runs on one core, and with the steps taken in turn the
    actor's other cores sat idle while it decoded. An actor with one network thread gets one
    segment at a time (:func:`~pipeline.execution.pools.calls_per_actor`): on one core the two
    only took turns. On a CPU with two or more threads for the
    actor, both segments may be in the networks at once, each on one thread, rather than one
    at a time on all of them (:meth:`ModelStage.one_thread_per_pass`): the networks' parallel
    loops wait for their slowest thread at every layer, and beside a decoding thread one of
    theirs was always waiting for a core (10-minute 480p clip on 2 cores, interleaved runs:
    247-251 frames/s with one pass on two threads, 292-297 with two passes on one thread each).

    A segment alone in the actor (the last of a run, or a lone short video) runs its int8 shot
    network's passes on all the actor's threads once no other segment has come for
    :data:`ALONE_BEFORE_WIDENING_S`, and on one again from the next pass after another comes:
    on one thread the actor's other core sat idle through the last segment of a run when it was
    alone (8 s of a 90 s run of the hard set, 2 cores). Only where the outputs stay the same
    (:attr:`ModelStage.shots_exact_on_any_threads`); the embeddings stay on one.

    A segment that was in the actor when a worker process died runs alone (decoding and every
    network pass held): a crash then counts against it only, so a good video that shared an
    actor with a decoder-crashing one is not failed with it.
    """

    name = "decode+models"
    stateful = True
    concurrent_calls = 2

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None) -> None:
        super().__init__(config, storage_options)
        self.decode = DecodeStage(config, storage_options)
        self.decode.pack_frames = False  # handed straight to the models: no .npy round trip
        self.models = ModelStage(config, storage_options)
        self._decoding = threading.Lock()
        self.allow_network_passes(1)
        #: Segments in the actor (in :meth:`process`), and since when one alone (monotonic s).
        self._inside = 0
        self._alone_since: float | None = None
        self._inside_lock = threading.Lock()
        self.models.before_each_shot_pass = self._set_pass_threads
        #: Done once the networks are loaded (:meth:`setup` starts loading them).
        self._models_ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._models_ready.set_result(None)

    def allow_network_passes(self, passes: int) -> None:
        """Let ``passes`` segments be in the networks at once."""
        self.network_passes = passes
        self._modelling = threading.BoundedSemaphore(passes)

    def guard_with(self, guard_for: Callable[[str], AttemptCounter]) -> None:
        self.decode.guard_with(guard_for)
        self.models.guard_with(guard_for)

    def setup(self) -> None:
        """Set decoding up, and start loading the networks on a thread of their own: the
        first segment decodes while the weights load (each on a core of a 2-core machine), and
        only its modelling waits for them."""
        self.decode.setup()
        self._models_ready = on_own_thread("model-setup", self._setup_models)

    def _setup_models(self) -> None:
        self.models.setup()
        self.allow_network_passes(self.models.one_thread_per_pass(self.concurrent_calls))
        log.info("%d segment(s) in the networks at once", self.network_passes)

    def _count_inside(self, change: int) -> None:
        with self._inside_lock:
            self._inside += change
            self._alone_since = time.monotonic() if self._inside == 1 else None

    def _set_pass_threads(self) -> None:
        """Before a shot-network pass: all the actor's threads where this segment has been
        alone in the actor for :data:`ALONE_BEFORE_WIDENING_S` and the outputs do not depend on
        the threads, else one per pass."""
        since = self._alone_since
        alone = since is not None and time.monotonic() - since >= ALONE_BEFORE_WIDENING_S
        wide = alone and self.models.shots_exact_on_any_threads
        self.models.use_threads(self.models.actor_threads if wide else self.models.call_threads)

    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        self._count_inside(+1)
        try:
            return self._process(row)
        finally:
            self._count_inside(-1)

    def _process(self, row: SegmentRecord) -> list[SegmentRecord]:
        if self.decode.died_on(row) or self.models.died_on(row):
            # Alone: no other segment inside either step.
            self._models_ready.result()
            with self._decoding, self._every_network_pass():
                return self._models(self.decode(row))
        with self._decoding:
            decoded = self.decode(row)
        self._models_ready.result()  # raises what loading the networks raised
        with self._modelling:
            return self._models(decoded)

    @contextlib.contextmanager
    def _every_network_pass(self) -> Iterator[None]:
        """Hold every network pass, taken one by one as the segments in them finish. Only a
        caller holding the decoding lock takes more than one, so two such callers never each
        hold a part."""
        for _ in range(self.network_passes):
            self._modelling.acquire()
        try:
            yield
        finally:
            for _ in range(self.network_passes):
                self._modelling.release()

    def remake(self, plan: SegmentRecord) -> list[SegmentRecord]:
        return self(plan)

    def _models(self, decoded: list[SegmentRecord]) -> list[SegmentRecord]:
        return [out for one in decoded for out in self.models(one)]

    def __call__(self, row: SegmentRecord) -> list[SegmentRecord]:
        return self.process(row)  # each step guards itself and turns its failures into rows


__all__ = [
    "ALONE_BEFORE_WIDENING_S",
    "MAX_WORKER_DEATHS",
    "AttemptCounter",
    "DecodeAndModelStage",
    "DecodeStage",
    "LastVideo",
    "ModelStage",
    "NoCrashGuard",
    "PlanStage",
    "Stage",
    "on_own_thread",
]
