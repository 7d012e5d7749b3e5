"""Ray Data stages: plan (probe + split), decode, models; and the one adapter that runs them.

A stage declares its resources as data, loads what it needs once in ``setup()`` and turns
one row into zero or more rows in ``process()``. Rows are flat Arrow records of the
``SEGMENT`` schema; array payloads travel as ``.npy`` bytes. A row whose ``error_stage``
is set passes through later stages untouched, so a bad video always reaches the driver
as exactly one failure.
"""

from __future__ import annotations

import abc
import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import Config
from pipeline.algorithms.segments import Segment, decode_size, plan_segments
from pipeline.media.decode import decode_segment
from pipeline.media.probe import probe
from pipeline.errors import DecodeError, ModelError, ProbeError, VideoError
from pipeline.index.store import VIDEOS
from pipeline.execution.processes import release_free_heap

log = logging.getLogger(__name__)

#: One record per video segment, filled in stage by stage.
SEGMENT = pa.schema(
    [
        *(VIDEOS.field(name) for name in ("video_id", "uri")),
        #: Where workers read the object: the uri, or a staged copy for process-local filesystems.
        pa.field("location", pa.string()),
        *(VIDEOS.field(name) for name in ("size_bytes", "etag", "mtime")),
        # plan
        *(VIDEOS.field(name) for name in ("num_frames", "fps", "duration_s", "width", "height", "codec")),
        ("rotation", pa.int32()),
        ("decode_width", pa.int32()),
        ("decode_height", pa.int32()),
        ("segment_index", pa.int32()),
        ("segment_count", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        # decode
        ("decoded_frames", pa.int64()),
        ("shot_input", pa.binary()),
        ("samples", pa.binary()),
        ("sample_frames", pa.binary()),
        ("frame_times", pa.binary()),
        # per-frame luma and colour layout, per-sample sharpness (pipeline.media.decode.DecodedSegment)
        ("frame_luma", pa.binary()),
        ("frame_colours", pa.binary()),
        ("sample_sharpness", pa.binary()),
        ("thumbnails", pa.list_(pa.binary())),
        # models
        ("single", pa.binary()),
        ("many", pa.binary()),
        ("embeddings", pa.binary()),
        # outcome
        ("warnings", pa.list_(pa.string())),
        ("error_stage", pa.string()),
        ("error_message", pa.string()),
    ]
)


def pack(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


#: The decode stage's per-frame statistics: row column = SegmentResult field.
FRAME_STATISTICS = ("frame_luma", "frame_colours", "sample_sharpness")


def frame_statistics(row: dict[str, Any]) -> dict[str, np.ndarray | None]:
    """A decoded segment row's statistics as :class:`~pipeline.algorithms.stitch.SegmentResult` keyword
    arguments; None for a column the row lacks (a row written before they were measured)."""
    return {name: unpack(row[name]) if row.get(name) is not None else None for name in FRAME_STATISTICS}


def failed(row: dict[str, Any], error: VideoError) -> dict[str, Any]:
    """The row marked as failed at the error's stage; heavy payloads dropped."""
    out = {k: row.get(k) for k in ("video_id", "uri", "location", "size_bytes", "etag", "mtime")}
    for key in ("num_frames", "fps", "duration_s", "width", "height", "codec"):
        out[key] = row.get(key)
    out.update(segment_index=row.get("segment_index") or 0, segment_count=row.get("segment_count") or 1)
    out.update(error_stage=error.stage, error_message=error.message, warnings=row.get("warnings"))
    return out


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage asks Ray for."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


#: A video whose processing killed this many worker processes is failed instead of retried
#: again: a decoder that segfaults on a file must not take the run down with it.
MAX_WORKER_DEATHS = 2


class CrashGuard:
    """Counts, across worker processes, the attempts at a unit of work that never finished.

    ``begin`` records an attempt in Ray's cluster key-value store and returns how many earlier
    attempts are still recorded: each one is a worker that died mid-way (its ``end`` never
    ran). Ray retries the work of a dead worker; the guard lets a stage stop retrying a video
    that kills its workers. Without Ray (stages called directly) it counts nothing.
    """

    NAMESPACE = "vindex-crash-guard"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @staticmethod
    def _active() -> bool:
        import ray

        return ray.is_initialized()

    def begin(self, key: str) -> int:
        if not self._active():
            return 0
        from ray.experimental import internal_kv

        full = f"{self.prefix}/{key}"
        earlier = int(internal_kv._internal_kv_get(full, namespace=self.NAMESPACE) or 0)
        internal_kv._internal_kv_put(full, str(earlier + 1), namespace=self.NAMESPACE)
        return earlier

    def end(self, key: str) -> None:
        if self._active():
            from ray.experimental import internal_kv

            internal_kv._internal_kv_del(f"{self.prefix}/{key}", namespace=self.NAMESPACE)


class Stage(abc.ABC):
    """One step of the pipeline; the adapter decides how Ray runs it."""

    name: str = "stage"
    #: Stateful stages (models to load) run on an actor pool; the rest as tasks.
    stateful: bool = False

    #: The ``error_stage`` a video gets when this stage fails on it.
    error_type: type[VideoError] = VideoError

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None, run_id: str = "") -> None:
        self.config = config
        self.storage_options = storage_options
        self.crash_guard = CrashGuard(f"{run_id}/{self.name}")

    def setup(self) -> None:
        """Load heavy state once per worker."""

    @abc.abstractmethod
    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """One row in, zero or more rows out. Raise VideoError for a bad video."""

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        if row.get("error_stage"):
            return [row]
        key = f"{row['video_id']}/{row.get('segment_index') or 0}"
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
            return [failed(row, exc)]
        finally:
            self.crash_guard.end(key)


class PlanStage(Stage):
    """Probe container metadata and split each video into segments."""

    name = "plan"
    error_type = ProbeError

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        if row.get("size_bytes") == 0:
            raise ProbeError(row["uri"], "empty object (0 bytes)")
        info = probe(row["location"], self.storage_options)
        # Segments only for the frames the file holds: a truncated upload's header still
        # declares the whole video, and each segment past the break would fetch and decode the
        # file for nothing. The last segment runs to the true end (see plan_segments).
        segments = plan_segments(info.num_frames, self.config.decode.segment_frames, held_frames=info.held_frames)
        width, height = decode_size(*info.display_size, self.config.decode.width, self.config.decode.height)
        base = {
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
            {**base, "segment_index": s.index, "start_frame": s.start_frame, "end_frame": s.end_frame}
            for s in segments
        ]


class DecodeStage(Stage):
    """Decode a segment once at model size; JPEG thumbnails of the sampled frames."""

    name = "decode"
    stateful = True
    error_type = DecodeError

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        from PIL import Image

        segment = Segment(row["segment_index"], row["segment_count"], row["start_frame"], row["end_frame"])
        decoded = decode_segment(
            row["location"],
            segment,
            self.config,
            self.storage_options,
            size=(row["decode_width"], row["decode_height"]),
            rotation=row["rotation"],
        )
        thumbnails = []
        for frame in decoded.samples:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=self.config.embed.thumbnail_quality)
            thumbnails.append(buffer.getvalue())
        return [
            {
                **row,
                "decoded_frames": decoded.num_frames,
                "shot_input": pack(decoded.shot_frames),
                "samples": pack(decoded.samples),
                "sample_frames": pack(decoded.sample_frames),
                "frame_times": pack(decoded.frame_times),
                # A few bytes per frame: flashes in shots, black/flash/blurred keyframes.
                "frame_luma": pack(decoded.frame_luma),
                "frame_colours": pack(decoded.frame_colours),
                "sample_sharpness": pack(decoded.sample_sharpness),
                "thumbnails": thumbnails,
                "warnings": (row.get("warnings") or []) + decoded.warnings,
            }
        ]


class ModelStage(Stage):
    """Shot-transition probabilities for every frame; embeddings of the sampled frames."""

    name = "models"
    stateful = True
    error_type = ModelError

    def setup(self) -> None:
        import torch

        from pipeline.models.efficientnet_lite import load_efficientnet_lite0
        from pipeline.models.inference import pick_device, prepare_for_inference
        from pipeline.models.transnetv2 import load_transnetv2

        # Ray sets OMP_NUM_THREADS=1 in workers; a CPU model actor should use the node's cores.
        threads = self.config.compute.model_threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        self.device = pick_device(self.config.inference.device)
        precision = self.config.inference.precision
        self.shot_model = prepare_for_inference(load_transnetv2(self.device), self.device, precision)
        self.embed_model = load_efficientnet_lite0(self.device)
        log.info("model stage on %s with %d threads", self.device, torch.get_num_threads())

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        from pipeline.models.inference import embed_frames, predict_transitions

        out = {**row, "shot_input": None, "samples": None}
        if not row["decoded_frames"]:
            empty = pack(np.zeros(0, np.float32))
            return [{**out, "single": empty, "many": empty, "embeddings": pack(np.zeros((0, 0), np.float16))}]
        inference = self.config.inference
        try:
            single, many = predict_transitions(
                self.shot_model,
                unpack(row["shot_input"]),
                window=self.config.shots.window_frames,
                batch_windows=inference.shot_batch_windows,
                device=self.device,
                precision=inference.precision,
            )
            embeddings = embed_frames(
                self.embed_model,
                unpack(row["samples"]),
                batch_size=inference.embed_batch_frames,
                device=self.device,
                precision=inference.precision,
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


class DecodeAndModelStage(Stage):
    """Decoding and both networks in one actor, for clusters without GPUs.

    On CPUs the networks set the pace and share the cores with decoding either way, so a
    separate decode pool buys no throughput; it costs a second process's working set alive
    at the same time and a trip through the object store for every segment. Each step keeps
    its own failure stage (``decode`` or ``models``) and its own crash guard.
    """

    name = "decode+models"
    stateful = True

    def __init__(self, config: Config, storage_options: dict[str, Any] | None = None, run_id: str = "") -> None:
        super().__init__(config, storage_options, run_id)
        self.decode = DecodeStage(config, storage_options, run_id)
        self.models = ModelStage(config, storage_options, run_id)

    def setup(self) -> None:
        self.decode.setup()
        self.models.setup()

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [out for decoded in self.decode(row) for out in self.models(decoded)]

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return self.process(row)  # each step guards itself and turns its failures into rows


def _run_rows(stage: Stage, batch: pa.Table) -> pa.Table:
    rows = []
    for row in batch.to_pylist():
        rows.extend(stage(row))
    return pa.Table.from_pylist(rows, schema=SEGMENT)


class _ActorAdapter:
    """Actor-side wrapper: builds the stage and calls setup() once per actor."""

    def __init__(self, stage_cls: type[Stage], kwargs: dict[str, Any]) -> None:
        self.stage = stage_cls(**kwargs)
        self.stage.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = _run_rows(self.stage, batch)
        # A segment's buffers are freed by now; give the pages back so an actor's memory stays
        # at one segment's working set however many segments it has processed.
        release_free_heap()
        return out


def apply_stage(
    dataset: Any,
    stage_cls: type[Stage],
    kwargs: dict[str, Any],
    resources: Resources,
    pool_size: int = 1,
    min_pool_size: int = 1,
) -> Any:
    """Add ``stage_cls`` to ``dataset`` as a Ray Data ``map_batches`` operator.

    The rule: stateful stages (a model or decoder to keep warm) get an actor pool that
    autoscales between ``min_pool_size`` and ``pool_size`` actors; stateless ones run as
    tasks. One row per batch, because a row is a whole segment (hundreds of frames) and is
    the unit of failure. A node that dies takes its actors and tasks with it: Ray Data
    restarts pool actors and retries their calls without limit (its defaults for actor
    pools, ``max_restarts=-1``, ``max_task_retries=-1``), and Ray retries tasks three times.
    """
    import ray.data

    common: dict[str, Any] = {
        "batch_size": 1,
        "batch_format": "pyarrow",
        "num_cpus": resources.num_cpus,
        "zero_copy_batch": True,
    }
    if resources.num_gpus:
        common["num_gpus"] = resources.num_gpus
    if stage_cls.stateful:
        return dataset.map_batches(
            _ActorAdapter,
            fn_constructor_args=(stage_cls, kwargs),
            compute=ray.data.ActorPoolStrategy(
                min_size=max(1, min_pool_size), max_size=max(1, min_pool_size, pool_size)
            ),
            **common,
        )
    stage = stage_cls(**kwargs)
    stage.setup()
    return dataset.map_batches(lambda batch: _run_rows(stage, batch), **common)


__all__ = [
    "SEGMENT",
    "DecodeStage",
    "ModelStage",
    "PlanStage",
    "Resources",
    "Stage",
    "apply_stage",
    "frame_statistics",
    "pack",
    "unpack",
]
