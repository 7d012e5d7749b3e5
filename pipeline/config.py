"""Run configuration: frozen, typed, one section per stage, validated once on the driver.

A YAML file mirrors the sections::

    decode:
      width: 256
    shots:
      threshold: 0.5
    inference:
      precision: fp32

Unknown keys and wrong types raise :class:`~pipeline.errors.ConfigError` naming the
key, so a typo fails before any work starts. Each section checks its own values
(``validate``); :class:`Config` checks what relates two sections. A key that moved to
another section (:data:`MOVED_KEYS`) fails naming its new place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.models.spec import SHOT_CONTEXT_FRAMES
from pipeline.redaction import has_userinfo, redact


@dataclass(frozen=True)
class SourceConfig:
    """Which objects under SOURCE are videos."""

    #: File-name endings (any case) of the objects taken for videos.
    extensions: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts", ".mpg", ".mpeg")
    #: Glob below SOURCE (used when SOURCE itself has no glob characters).
    pattern: str = "**"

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``source.*`` value."""
        _require(all(e.startswith(".") for e in self.extensions), "source.extensions", "entries start with '.'")


@dataclass(frozen=True)
class StorageConfig:
    """Object-storage settings (S3 and compatible). Credentials come from the environment only."""

    #: e.g. http://127.0.0.1:9000 for MinIO; default: AWS_ENDPOINT_URL or the provider's.
    endpoint_url: str = ""
    #: e.g. eu-west-1; default: AWS_REGION or AWS_DEFAULT_REGION, else the provider's.
    region: str = ""
    #: Unsigned requests, for public buckets.
    anonymous: bool = False
    #: A named profile from ~/.aws/config.
    profile: str = ""

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``storage.*`` value."""
        _require(
            not self.endpoint_url or self.endpoint_url.startswith(("http://", "https://")),
            "storage.endpoint_url",
            "must start with http:// or https://",
        )
        _require(
            not has_userinfo(self.endpoint_url),
            "storage.endpoint_url",
            f"holds credentials ({redact(self.endpoint_url)}): vindex takes them from the environment only "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE), so that none is stored in a run's "
            "config or printed; remove them from the URL",
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How frames are decoded: once, at the size the models need."""

    #: Decode size for every frame; shots downscale it to 48x27, embeddings and thumbnails use it.
    width: int = 256
    #: Decode height, as width.
    height: int = 144
    #: Frames per segment: long videos are split into segments processed independently.
    #: Must be a multiple of the shot network's step (window_frames - 50).
    segment_frames: int = 1500
    #: Decoder threads per decode actor.
    threads: int = 2
    #: Most frames a video may hold (default: 24 hours at 60 fps). A video holding more fails
    #: at planning with a message naming its frame count and this setting, before any segment
    #: is queued; it is not indexed in part, since an index of a video's first hours would
    #: pass for the whole video. The frames a file holds are checked, not only what its header
    #: declares: a file too small for its declared duration has its packets counted.
    max_frames: int = 24 * 3600 * 60

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``decode.*`` value (the segment grid is the
        shot window's, checked by :class:`Config`)."""
        _require(self.width >= 48 and self.height >= 27, "decode.width/height", "must be at least 48x27")
        _require(self.width % 2 == 0 and self.height % 2 == 0, "decode.width/height", "must be even")
        _require(self.max_frames >= 1, "decode.max_frames", "must be at least 1")


@dataclass(frozen=True)
class ShotsConfig:
    """Shot-boundary detection (TransNetV2) and post-processing."""

    #: A transition's peak probability (either head) must exceed this.
    threshold: float = 0.5
    #: Frames above this (either head) around a peak belong to the same candidate (hysteresis).
    low_threshold: float = 0.2
    #: Probability above which a frame belongs to a transition's extent (many-hot head).
    extent_threshold: float = 0.5
    #: A transition spanning at least this many frames (many-hot head) is gradual, else a cut.
    gradual_min_frames: int = 3
    #: Shots shorter than this are merged into the previous shot (flashes, glitches).
    min_shot_frames: int = 6
    #: Frames per inference window; 25 context frames each side are dropped. The network was
    #: trained on 100; 200 keeps 75% of the frames it processes instead of 50%, at equal F1
    #: on the generated benchmark set (benchmarks/accuracy.py).
    window_frames: int = 200
    #: A flash is a run of at most this many frames brighter than the frames either side of it;
    #: a transition inside one whose two sides look alike is not a transition (pipeline.algorithms.shots).
    flash_max_frames: int = 4
    #: Luma (0-255) by which a flash's brightest frame exceeds both sides of the run...
    flash_luma_jump: float = 20.0
    #: ...and by which each of its frames does.
    flash_min_rise: float = 4.0
    #: How much more (0-255, mean over cells and channels) the colour layout may change across
    #: a flash than the shot's own motion changes it, for the frames either side to be one shot.
    flash_max_colour_change: float = 5.0

    @property
    def step(self) -> int:
        """Frames each shot-network window predicts: the window less its context either side
        (the grid that segments start on)."""
        return self.window_frames - 2 * SHOT_CONTEXT_FRAMES

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``shots.*`` value."""
        _require(
            self.step > 0,
            "shots.window_frames",
            f"must exceed {2 * SHOT_CONTEXT_FRAMES} (the context frames)",
        )
        for key in ("threshold", "low_threshold", "extent_threshold"):
            _require(0.0 < getattr(self, key) < 1.0, f"shots.{key}", "must be between 0 and 1")
        _require(self.low_threshold <= self.threshold, "shots.low_threshold", "must not exceed shots.threshold")
        _require(self.gradual_min_frames >= 2, "shots.gradual_min_frames", "must be at least 2")
        _require(self.flash_max_frames >= 0, "shots.flash_max_frames", "must be 0 (no flash filter) or more")
        _require(self.flash_luma_jump > 0, "shots.flash_luma_jump", "must be positive")
        _require(
            0 <= self.flash_min_rise <= self.flash_luma_jump,
            "shots.flash_min_rise",
            "must be between 0 and shots.flash_luma_jump",
        )
        _require(self.flash_max_colour_change >= 0, "shots.flash_max_colour_change", "must not be negative")


@dataclass(frozen=True)
class EmbedConfig:
    """Frame embeddings (EfficientNet-Lite0) on sampled frames."""

    #: Embed every Nth frame (global frame numbers divisible by N).
    stride_frames: int = 6
    #: JPEG quality (1-95) of the keyframes' thumbnails.
    thumbnail_quality: int = 80

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``embed.*`` value."""
        _require(self.stride_frames >= 1, "embed.stride_frames", "must be at least 1")
        _require(1 <= self.thumbnail_quality <= 95, "embed.thumbnail_quality", "must be in 1..95")


@dataclass(frozen=True)
class InferenceConfig:
    """How both networks run: device, numeric precision, batch sizes (pipeline.models.inference)."""

    #: "auto" uses CUDA when the cluster has GPUs; "cpu" forces CPU; "cuda" asks for GPU nodes.
    device: str = "auto"
    #: Both networks: "fp32", "bf16", "int8", or "auto". "auto": on CUDA fp16; on a CPU, with
    #: ``calibrate``, each network's fastest precision within tolerance, measured once per kind
    #: of machine and torch and cached (pipeline.models.calibration, docs/precision.md);
    #: without it, the fixed rule: the shot network's convolution blocks in int8 (where torch
    #: has quantized CPU kernels, its other layers float32) and the embedding network in bf16
    #: autocast on CPUs with native bf16 (AMX/AVX512-BF16), else fp32. "int8" is that fixed
    #: rule (the int8 blocks are for CPUs only).
    precision: str = "auto"
    #: Under ``precision: auto`` on a CPU, measure the candidates on the first start on each
    #: kind of machine (about 10 s, then cached in ``$XDG_CACHE_HOME/vindex/precision``);
    #: false: the fixed rule.
    calibrate: bool = True
    #: Shot-network windows per forward pass; 0 = by device: 1 on a CPU (measured fastest
    #: there, and the smallest activations: 0.7 GB less peak memory than 4), 8 on a GPU.
    shot_batch_windows: int = 0
    #: Frames per embedding forward pass; 0 = by device: 16 on a CPU, 64 on a GPU.
    embed_batch_frames: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``inference.*`` value."""
        _require(self.device in ("auto", "cpu", "cuda"), "inference.device", "must be 'auto', 'cpu' or 'cuda'")
        _require(
            self.precision in ("fp32", "bf16", "int8", "auto"),
            "inference.precision",
            "must be 'fp32', 'bf16', 'int8' or 'auto'",
        )
        _require(self.shot_batch_windows >= 0, "inference.shot_batch_windows", "must be 0 (by device) or more")
        _require(self.embed_batch_frames >= 0, "inference.embed_batch_frames", "must be 0 (by device) or more")


@dataclass(frozen=True)
class KeyframesConfig:
    """Keyframes by attention centrality inside each shot."""

    #: One more keyframe per this many seconds of shot.
    seconds_per_keyframe: float = 4.0
    #: Most keyframes of one shot, however long.
    max_per_shot: int = 5
    #: A candidate this cosine-similar to a chosen keyframe is redundant.
    redundancy_cosine: float = 0.95
    #: Softmax temperature over cosine similarities.
    temperature: float = 0.1
    #: A frame darker than this mean luma (0-255) is black: no keyframe, unless the shot is dark;
    #: and no shot of black alone: black frames next to a transition belong to it, so the black
    #: hold of a fade through black is part of the one transition (pipeline.algorithms.shots).
    black_luma: float = 16.0
    #: A frame brighter than the median of its shot's frames by this luma (0-255) is a flash.
    flash_luma_jump: float = 20.0
    #: Frames with a transition probability (many-hot head) above this are mixed frames of a
    #: dissolve or fade: no keyframe. The head rises over a frame or two at a dissolve's edges:
    #: the first blended frame of a 16-frame dissolve scored 0.18 (tests/test_keyframe_quality.py).
    #: On the hard set this (with pipeline.algorithms.keyframes.MIXED_MARGIN_FRAMES) leaves out 303 of the
    #: 2,287 sampled frames inside shots.
    transition_probability: float = 0.1
    #: A part's keyframe is its best centrality x sharpness ** this (0: the most central).
    #: Measured on the hard set (benchmarks/accuracy.py --keyframes): keyframes' sharpness,
    #: relative to their shot's sharpest sampled frame, 0.801 at 0 and 0.890 at 0.5, for a mean
    #: centrality of 1.147 instead of 1.175; taking the sharpest of the frames within 10% of the
    #: best centrality instead gave 0.887 for 1.133, and 1.0 here 0.915 for 1.126.
    sharpness_weight: float = 0.5

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``keyframes.*`` value."""
        _require(self.seconds_per_keyframe > 0, "keyframes.seconds_per_keyframe", "must be positive")
        _require(self.max_per_shot >= 1, "keyframes.max_per_shot", "must be at least 1")
        _require(self.temperature > 0, "keyframes.temperature", "must be positive")
        _require(0 <= self.black_luma <= 255, "keyframes.black_luma", "must be in 0..255")
        _require(self.flash_luma_jump > 0, "keyframes.flash_luma_jump", "must be positive")
        _require(
            0 < self.transition_probability < 1, "keyframes.transition_probability", "must be between 0 and 1"
        )
        _require(0 <= self.sharpness_weight <= 4, "keyframes.sharpness_weight", "must be in 0..4")


@dataclass(frozen=True)
class ScenesConfig:
    """Scenes by attention between neighbouring shots (rules in pipeline.algorithms.scenes).

    Defaults chosen on three real-footage sets together (benchmarks/scene_methods.py: the two
    committed scenes sets, 6 and 8 videos, and scenes-dev, 5), with the within-scene
    directions shrunk: boundary F1 1.00, 0.99 and 0.99 on vindex's own shots (benchmarks/scenes.py);
    fitted on the other two sets, 0.986, 0.925 and 0.989; on the held-out scenes_set3 0.95
    (docs/scenes.md).
    """

    #: Shots each side of a boundary that take part in the attention; a place seen again
    #: within this many shots stays one scene.
    window_shots: int = 2
    #: A boundary across which less than this share of the attention crosses starts a scene.
    threshold: float = 0.2
    #: Softmax temperature over similarities: 0.05 gives a shot 0.1 more alike e^2 = 7.4 times
    #: the weight.
    temperature: float = 0.05
    #: A shot's logit for itself: it attends to another shot only if the two are more alike
    #: than this (by the similarity that fuses the centred embeddings' cosine and colour).
    #: Adjacent true shots' fused similarity on the three sets: same scene median 0.47-0.57,
    #: different scenes median -0.05-0.02 (95th percentile 0.21-0.27).
    reference_cosine: float = 0.2
    #: Share of the colour histograms' intersection in the similarity of two shots (the rest is
    #: their embeddings' cosine); 0 = embeddings alone. Look-alike neighbouring places and
    #: low-resolution footage, whose embeddings are close, differ in colour; but the shots of
    #: one place differ in colour too (another wall, the window side), and the centred
    #: embeddings already tell most look-alikes apart: a little colour holds on all three sets.
    colour_weight: float = 0.05
    #: Compare shots by their embeddings less the centre of the embedding space (the mean
    #: shot embedding of the development sets, pipeline/algorithms/embedding_centre.py), which
    #: every embedding shares whatever it shows; off: by the embeddings as stored.
    centre_embeddings: bool = True
    #: With centre_embeddings: shrink the directions in which shots of one scene differ (another
    #: zoom, framing or subject; fitted on the development sets' true scenes,
    #: pipeline/algorithms/within_scene.py) before comparing shots, so that the directions
    #: that tell places apart weigh more. Ignored without centre_embeddings.
    shrink_within_scene: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``scenes.*`` value."""
        _require(0 <= self.colour_weight <= 1, "scenes.colour_weight", "must be in 0..1")
        _require(self.temperature > 0, "scenes.temperature", "must be positive")
        _require(self.window_shots >= 1, "scenes.window_shots", "must be at least 1")
        _require(-1 <= self.reference_cosine <= 1, "scenes.reference_cosine", "must be in -1..1")


@dataclass(frozen=True)
class ComputeConfig:
    """Ray resources (rules in pipeline.execution.pools)."""

    #: Most actors of each pool (each pool starts at one and scales up as work queues);
    #: 0 = derive from the cluster's CPUs and GPUs.
    decode_actors: int = 0
    #: As decode_actors, for the model pool.
    model_actors: int = 0
    #: CPUs per decode actor; fractional so that small machines never deadlock.
    decode_cpus: float = 0.5
    #: CPUs per model actor when there is no GPU.
    model_cpus: float = 1.0
    #: GPUs per model actor when the cluster has GPUs (fractions share a GPU).
    model_gpus: float = 1.0
    #: Object-store memory the pipeline's queues may hold, in MB: decoding runs ahead of the
    #: models, and this bounds how far. Not applied to fused actors on several nodes: no decode
    #: pool, only planned segments of a few hundred bytes queue, and Ray Data holds planning
    #: back once that queue is twice what the actors hold (pools.PoolPlan.reserve_per_operator).
    max_inflight_mb: int = 1024
    #: Object store of the embedded Ray that `vindex run` starts (not a cluster's): its pages,
    #: once written, stay resident, so a large store lets a long run's memory creep towards
    #: it (measured: 1.75 GB of object-store pages at the peak of a 60-minute video).
    embedded_object_store_mb: int = 1024
    #: Torch threads per model actor; 0 = the CPUs Ray gave the actor, rounded up. A CPU actor
    #: with one thread takes one segment at a time, with two or more two (one decoding).
    model_threads: int = 0
    #: On a cluster without GPUs, decode inside the model actors instead of in a separate decode
    #: pool: one process per segment, so no hand-off through the object store and one working
    #: set instead of two at once (measured on 2 CPUs: less memory and more frames/s, since
    #: the networks are the bottleneck either way). Each such actor asks for model_cpus +
    #: decode_cpus; decode_actors is then unused. Ignored when the models run on GPUs.
    fuse_on_cpu: bool = True
    #: Where Linux shares CPU time between sessions ("autogroups", on in most kernels), a
    #: worker's niceness counts only within its session, and a submitted job's driver, in a
    #: session of its own, shares a core with a busy actor as an equal: on a head that also
    #: ran a model actor the driver was held off for 10-20 s at a time, and the other nodes'
    #: actors got no new segment meanwhile. On: each actor of a pool of two or more that runs
    #: on the driver's node outside its session takes a session and CPU group of its own at
    #: the niceness Ray gave it, behind the driver. Off leaves the actors where Ray starts them.
    background_actors: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``compute.*`` value."""
        _require(self.decode_cpus > 0, "compute.decode_cpus", "must be positive")
        _require(self.max_inflight_mb >= 64, "compute.max_inflight_mb", "must be at least 64")
        _require(self.embedded_object_store_mb >= 128, "compute.embedded_object_store_mb", "must be at least 128")
        _require(self.model_cpus > 0, "compute.model_cpus", "must be positive")
        _require(self.model_gpus > 0, "compute.model_gpus", "must be positive (a fraction shares a GPU)")
        for key in ("decode_actors", "model_actors"):
            _require(getattr(self, key) >= 0, f"compute.{key}", "must be 0 (derive from the cluster) or more")


@dataclass(frozen=True)
class WriteConfig:
    """Commits to the index."""

    #: Videos per atomic commit: a crash loses at most the batch in flight.
    commit_every_videos: int = 16
    #: A running run renews its heartbeat every fifth of this; a run silent for longer is taken
    #: for killed, and the next run clears the rows it left uncommitted. Longer than any pause a
    #: live run may have (a suspended laptop would be taken for dead after this).
    run_lease_s: float = 600.0

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``write.*`` value."""
        _require(self.commit_every_videos >= 1, "write.commit_every_videos", "must be at least 1")
        _require(self.run_lease_s >= 1, "write.run_lease_s", "must be at least 1 second")


#: What changing a setting does to an indexed video:
#: OUTPUTS: changes what decoding and the networks produce, so the video is decoded again;
#: DERIVED: changes only tables derived from stored outputs (scenes, from the shots' stored
#: embeddings), so they are derived again without decoding;
#: NOTHING: changes how fast or where, never what (threads, batch and pool sizes, storage).
OUTPUTS, DERIVED, NOTHING = "outputs", "derived", "nothing"

#: Every setting's effect. A setting missing here fails the tests, so each new one is classified.
SETTING_EFFECTS: dict[str, str] = {
    # What is listed, not what a listed video gives.
    "source.extensions": NOTHING,
    "source.pattern": NOTHING,
    "storage.endpoint_url": NOTHING,
    "storage.region": NOTHING,
    "storage.anonymous": NOTHING,
    "storage.profile": NOTHING,
    "decode.width": OUTPUTS,
    "decode.height": OUTPUTS,
    # A video split into segments gives exactly the predictions of the whole (tested).
    "decode.segment_frames": NOTHING,
    "decode.threads": NOTHING,
    # Decides only whether a video is indexed at all: one over the cap fails (and a failed video
    # is tried again on the next run); one under it is indexed whole, whatever the cap.
    "decode.max_frames": NOTHING,
    # Shot post-processing reads per-frame probabilities, which the index does not keep.
    "shots.threshold": OUTPUTS,
    "shots.low_threshold": OUTPUTS,
    "shots.extent_threshold": OUTPUTS,
    "shots.gradual_min_frames": OUTPUTS,
    "shots.min_shot_frames": OUTPUTS,
    "shots.window_frames": OUTPUTS,
    "shots.flash_max_frames": OUTPUTS,
    "shots.flash_luma_jump": OUTPUTS,
    "shots.flash_min_rise": OUTPUTS,
    "shots.flash_max_colour_change": OUTPUTS,
    "embed.stride_frames": OUTPUTS,
    "embed.thumbnail_quality": OUTPUTS,
    # Reduced precision changes both networks' outputs slightly; device and batch sizes do not
    # (each window and frame is computed alone, whatever its batch).
    "inference.device": NOTHING,
    "inference.precision": OUTPUTS,
    # Which precisions "auto" measures as fastest depends on the machine, as the fixed rule's
    # bf16 did (native bf16 or not): within the documented tolerances, like a change of machine.
    "inference.calibrate": NOTHING,
    "inference.shot_batch_windows": NOTHING,
    "inference.embed_batch_frames": NOTHING,
    # Keyframes read every sampled frame's embedding, which the index does not keep.
    "keyframes.seconds_per_keyframe": OUTPUTS,
    "keyframes.max_per_shot": OUTPUTS,
    "keyframes.redundancy_cosine": OUTPUTS,
    "keyframes.temperature": OUTPUTS,
    "keyframes.black_luma": OUTPUTS,
    "keyframes.flash_luma_jump": OUTPUTS,
    "keyframes.transition_probability": OUTPUTS,
    "keyframes.sharpness_weight": OUTPUTS,
    "scenes.window_shots": DERIVED,
    "scenes.threshold": DERIVED,
    "scenes.temperature": DERIVED,
    "scenes.reference_cosine": DERIVED,
    "scenes.colour_weight": DERIVED,
    "scenes.centre_embeddings": DERIVED,
    "scenes.shrink_within_scene": DERIVED,
    **{f"compute.{f.name}": NOTHING for f in dataclasses.fields(ComputeConfig)},
    **{f"write.{f.name}": NOTHING for f in dataclasses.fields(WriteConfig)},
}

#: Keys that moved to another section: old key -> new key. A YAML file or override that still
#: uses an old key fails naming the new one; :func:`upgrade_stored` moves them in the
#: configurations that older runs recorded in the ``runs`` table.
MOVED_KEYS: dict[str, str] = {
    "shots.precision": "inference.precision",
    "shots.batch_windows": "inference.shot_batch_windows",
    "embed.batch_size": "inference.embed_batch_frames",
    "compute.device": "inference.device",
}
#: Settings hashed under their old key, so that :meth:`Config.digest` of every index written
#: before they moved stays the same (a changed digest would re-decode every video).
_DIGEST_KEYS: dict[str, str] = {new: old for old, new in MOVED_KEYS.items()}


@dataclass(frozen=True)
class Config:
    """Every setting of a run, one section per stage; checked when built, before any work."""

    source: SourceConfig = field(default_factory=SourceConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    keyframes: KeyframesConfig = field(default_factory=KeyframesConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    write: WriteConfig = field(default_factory=WriteConfig)

    def __post_init__(self) -> None:
        for section in dataclasses.fields(self):  # each section checks its own settings
            getattr(self, section.name).validate()
        self._validate_across_sections()

    def _validate_across_sections(self) -> None:
        """Checks that relate two sections' values."""
        step = self.shots.step
        _require(
            self.decode.segment_frames > 0 and self.decode.segment_frames % step == 0,
            "decode.segment_frames",
            f"must be a positive multiple of shots.window_frames - {2 * SHOT_CONTEXT_FRAMES} = {step}",
        )
        _require(
            self.shots.min_shot_frames >= self.embed.stride_frames,
            "shots.min_shot_frames",
            f"must be >= embed.stride_frames ({self.embed.stride_frames}) so every shot holds an embedded frame",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, effect: str = OUTPUTS) -> str:
        """Hash of the settings with ``effect`` (see :data:`SETTING_EFFECTS`): by default those
        that change what decoding and the networks produce; a change re-decodes a video.

        A setting that moved section is hashed under its old key (:data:`MOVED_KEYS`), so the
        digests of existing indexes stay valid."""
        if effect not in (OUTPUTS, DERIVED):
            raise ValueError(f"no digest of settings that change {effect!r}")  # programming error
        values = self.to_dict()
        relevant = {
            _DIGEST_KEYS.get(key, key): values[key.split(".")[0]][key.split(".")[1]]
            for key, e in SETTING_EFFECTS.items()
            if e == effect
        }
        return _hash(relevant)


def _hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {message}")


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Check ``value`` against a dataclass field annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        _require(isinstance(value, (list, tuple)), key, f"expected a list, got {type(value).__name__}")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(f"{key}[]", item_type, item) for item in value)
    if annotation is float:
        _require(
            isinstance(value, (int, float)) and not isinstance(value, bool), key, f"expected a number, got {value!r}"
        )
        return float(value)
    if annotation is int:
        _require(isinstance(value, int) and not isinstance(value, bool), key, f"expected an integer, got {value!r}")
        return value
    if annotation is bool:
        _require(isinstance(value, bool), key, f"expected true or false, got {value!r}")
        return value
    if annotation is str:
        _require(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # programming error


def _build_section(section_cls: type, name: str, values: Any) -> Any:
    _require(isinstance(values, dict), name, "expected a mapping of settings")
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    kwargs = {}
    for key, value in values.items():
        moved = MOVED_KEYS.get(f"{name}.{key}")
        _require(moved is None, f"{name}.{key}", f"{name}.{key} moved to {moved}")
        _require(key in known, f"{name}.{key}", f"unknown setting; known: {', '.join(sorted(known))}")
        kwargs[key] = _coerce(f"{name}.{key}", hints[key], value)
    return section_cls(**kwargs)


def upgrade_stored(data: dict[str, Any] | None) -> dict[str, Any]:
    """A configuration recorded by an older vindex (a ``runs`` row) with its moved keys
    (:data:`MOVED_KEYS`) in their new places, ready for :func:`config_from_dict`."""
    upgraded = {name: dict(values) if isinstance(values, dict) else values for name, values in (data or {}).items()}
    for old, new in MOVED_KEYS.items():
        old_section, _, old_key = old.partition(".")
        section = upgraded.get(old_section)
        if isinstance(section, dict) and old_key in section:
            new_section, _, new_key = new.partition(".")
            value = section.pop(old_key)
            upgraded.setdefault(new_section, {}).setdefault(new_key, value)
    return upgraded


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from nested dicts (YAML's shape)."""
    data = data or {}
    _require(isinstance(data, dict), "<root>", "expected a mapping of sections")
    hints = typing.get_type_hints(Config)
    sections = {f.name for f in dataclasses.fields(Config)}
    kwargs = {}
    for name, values in data.items():
        _require(name in sections, name, f"unknown section; known: {', '.join(sorted(sections))}")
        kwargs[name] = _build_section(hints[name], name, values)
    return Config(**kwargs)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read YAML at ``path`` (or defaults), apply dotted ``overrides`` (``{"shots.threshold": 0.4}``)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        data = loaded or {}
        _require(isinstance(data, dict), "<root>", f"{path} must hold a mapping of sections")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    return config_from_dict(data)
