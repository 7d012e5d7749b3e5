from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from pipeline.config import (
    DERIVED,
    MOVED_KEYS,
    NOTHING,
    OUTPUTS,
    SETTING_EFFECTS,
    ComputeConfig,
    Config,
    DecodeConfig,
    EmbedConfig,
    InferenceConfig,
    KeyframesConfig,
    ScenesConfig,
    ShotsConfig,
    SourceConfig,
    StorageConfig,
    WriteConfig,
    config_from_dict,
    load_config,
    upgrade_stored,
)
from pipeline.errors import ConfigError


def test_yaml_sections_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "vindex.yaml"
    path.write_text("shots:\n  threshold: 0.4\ndecode:\n  width: 128\n  height: 72\n")
    config = load_config(path, {"keyframes.max_per_shot": 2, "shots.low_threshold": 0.1})
    assert config.shots.threshold == 0.4
    assert config.shots.low_threshold == 0.1
    assert (config.decode.width, config.decode.height) == (128, 72)
    assert config.keyframes.max_per_shot == 2


def test_unknown_key_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'shots.treshold'.*unknown setting.*threshold"):
        config_from_dict({"shots": {"treshold": 0.5}})


def test_unknown_section() -> None:
    with pytest.raises(ConfigError, match=r"'shot'.*unknown section"):
        config_from_dict({"shot": {}})


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"'decode.width'.*expected an integer"):
        config_from_dict({"decode": {"width": "wide"}})
    with pytest.raises(ConfigError, match=r"'shots.threshold'.*expected a number"):
        config_from_dict({"shots": {"threshold": True}})


def test_integers_are_accepted_for_floats() -> None:
    assert config_from_dict({"keyframes": {"seconds_per_keyframe": 3}}).keyframes.seconds_per_keyframe == 3.0


def test_segment_length_must_follow_the_shot_window_grid() -> None:
    with pytest.raises(ConfigError, match=r"'decode.segment_frames'.*multiple of .* = 150"):
        config_from_dict({"decode": {"segment_frames": 1234}})
    config = config_from_dict({"decode": {"segment_frames": 100}, "shots": {"window_frames": 100}})
    assert config.decode.segment_frames == 100


def test_every_shot_must_hold_an_embedded_frame() -> None:
    with pytest.raises(ConfigError, match=r"'shots.min_shot_frames'.*embed.stride_frames"):
        Config(shots=ShotsConfig(min_shot_frames=3))


def test_bad_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("shots: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_setting_declares_what_changing_it_does() -> None:
    declared = set(SETTING_EFFECTS)
    sections = typing.get_type_hints(Config)
    every = {f"{name}.{f.name}" for name, section in sections.items() for f in dataclasses.fields(section)}
    assert declared == every
    assert set(SETTING_EFFECTS.values()) == {OUTPUTS, DERIVED, NOTHING}


#: A changed value for each setting that must take effect (valid with the defaults).
CHANGED = {
    "source.extensions": [".mp4"], "source.pattern": "*", "storage.endpoint_url": "http://127.0.0.1:9",
    "storage.region": "eu-west-1", "storage.anonymous": True, "storage.profile": "p", "decode.width": 320,
    "decode.height": 180, "decode.segment_frames": 3000, "decode.threads": 4, "decode.max_frames": 1000, "shots.threshold": 0.6,
    "shots.low_threshold": 0.3, "shots.extent_threshold": 0.4, "shots.gradual_min_frames": 4,
    "shots.min_shot_frames": 8, "shots.window_frames": 150, "inference.shot_batch_windows": 2,
    "inference.precision": "fp32", "inference.calibrate": False, "embed.stride_frames": 3, "inference.embed_batch_frames": 8,
    "embed.thumbnail_quality": 70,
    "keyframes.seconds_per_keyframe": 2.0, "keyframes.max_per_shot": 3, "keyframes.redundancy_cosine": 0.9,
    "keyframes.temperature": 0.2, "scenes.window_shots": 3, "scenes.threshold": 0.3, "scenes.temperature": 0.2,
    "compute.decode_actors": 2, "compute.model_actors": 2, "compute.decode_cpus": 0.25, "compute.model_cpus": 2.0,
    "compute.model_gpus": 0.5, "compute.max_inflight_mb": 512, "compute.embedded_object_store_mb": 512,
    "compute.model_threads": 1, "compute.fuse_on_cpu": False, "compute.background_actors": False, "inference.device": "cpu",
    "write.commit_every_videos": 4, "write.run_lease_s": 60.0,
    "shots.flash_max_frames": 2, "shots.flash_luma_jump": 30.0, "shots.flash_min_rise": 6.0,
    "shots.flash_max_colour_change": 8.0, "keyframes.black_luma": 20.0, "keyframes.flash_luma_jump": 30.0,
    "keyframes.transition_probability": 0.2, "keyframes.sharpness_weight": 1.0, "scenes.reference_cosine": 0.6, "scenes.centre_embeddings": False,
    "scenes.shrink_within_scene": False,
    "scenes.colour_weight": 0.5,
}


@pytest.mark.parametrize("key", sorted(SETTING_EFFECTS))
def test_a_setting_changes_only_the_digest_of_its_group(key: str) -> None:
    base = Config()
    changed = load_config(None, {key: CHANGED[key]})
    effect = SETTING_EFFECTS[key]
    assert (changed.digest(OUTPUTS) != base.digest(OUTPUTS)) == (effect == OUTPUTS)
    assert (changed.digest(DERIVED) != base.digest(DERIVED)) == (effect == DERIVED)


def test_digest_ignores_compute_but_not_model_settings() -> None:
    base = Config()
    assert config_from_dict({"compute": {"decode_actors": 3}}).digest() == base.digest()
    assert config_from_dict({"shots": {"threshold": 0.6}}).digest() != base.digest()


#: Digests of a default config, and of one setting each moved key and a scenes setting, as
#: computed before the inference settings moved to their own section: indexes written then
#: must not be decoded again. The scene digests moved when colour joined the scene rule
#: (``scenes.colour_weight`` and new defaults), and again when the defaults were chosen on
#: three sets with centred embeddings (``scenes.centre_embeddings``), and again with the
#: within-scene directions shrunk (``scenes.shrink_within_scene``): scenes are derived again,
#: nothing is decoded (the first digest of each pair has not moved).
DEFAULT_DIGESTS = ("2b8b934b9b06c9c7", "604ab9f1fc0c806d")
FP32_DIGESTS = ("6a9f6c12a037e91e", "604ab9f1fc0c806d")
MIXED_DIGESTS = ("85be71869a6519a3", "994015bc93a2e003")
MIXED = {
    "inference": {"precision": "bf16", "shot_batch_windows": 3, "embed_batch_frames": 5, "device": "cpu"},
    "scenes": {"threshold": 0.1},
}


def test_digests_are_those_of_the_indexes_already_written() -> None:
    assert (Config().digest(OUTPUTS), Config().digest(DERIVED)) == DEFAULT_DIGESTS
    fp32 = config_from_dict({"inference": {"precision": "fp32"}})
    assert (fp32.digest(OUTPUTS), fp32.digest(DERIVED)) == FP32_DIGESTS
    mixed = config_from_dict(MIXED)
    assert (mixed.digest(OUTPUTS), mixed.digest(DERIVED)) == MIXED_DIGESTS


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_KEYS.items()))
def test_a_moved_key_fails_naming_its_new_place(old: str, new: str, tmp_path: Path) -> None:
    value = {"inference.device": "cpu", "inference.precision": "fp32"}.get(new, 2)
    with pytest.raises(ConfigError, match=f"'{old}'.*{old} moved to {new}"):
        load_config(None, {old: value})
    section, _, key = old.partition(".")
    path = tmp_path / "vindex.yaml"
    path.write_text(f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=f"{old} moved to {new}"):
        load_config(path)
    new_section, _, new_key = new.partition(".")
    assert getattr(getattr(load_config(None, {new: value}), new_section), new_key) == value


def test_a_configuration_an_older_run_recorded_is_upgraded() -> None:
    recorded = Config().to_dict()
    recorded.pop("inference")
    recorded["shots"].update(precision="bf16", batch_windows=3)
    recorded["embed"]["batch_size"] = 5
    recorded["compute"]["device"] = "cpu"
    recorded["scenes"]["threshold"] = 0.1
    with pytest.raises(ConfigError, match="moved to"):
        config_from_dict(recorded)
    upgraded = config_from_dict(upgrade_stored(recorded))
    assert upgraded == config_from_dict(MIXED)
    assert "precision" in recorded["shots"]  # the recorded dict itself is left alone
    assert upgrade_stored(None) == {}


#: For each section, a value of one of its own settings that the section refuses, and the key
#: the error must name.
BAD_SECTIONS = [
    (SourceConfig(extensions=("mp4",)), "source.extensions"),
    (StorageConfig(endpoint_url="ftp://x"), "storage.endpoint_url"),
    (DecodeConfig(width=47), "decode.width/height"),
    (ShotsConfig(window_frames=50), "shots.window_frames"),
    (ShotsConfig(low_threshold=0.6), "shots.low_threshold"),
    (EmbedConfig(thumbnail_quality=0), "embed.thumbnail_quality"),
    (InferenceConfig(precision="fp16"), "inference.precision"),
    (InferenceConfig(device="tpu"), "inference.device"),
    (InferenceConfig(shot_batch_windows=-1), "inference.shot_batch_windows"),
    (InferenceConfig(embed_batch_frames=-1), "inference.embed_batch_frames"),
    (KeyframesConfig(max_per_shot=0), "keyframes.max_per_shot"),
    (ScenesConfig(reference_cosine=2.0), "scenes.reference_cosine"),
    (ComputeConfig(max_inflight_mb=1), "compute.max_inflight_mb"),
    (WriteConfig(run_lease_s=0.5), "write.run_lease_s"),
]


@pytest.mark.parametrize(("section", "key"), BAD_SECTIONS, ids=[key for _, key in BAD_SECTIONS])
def test_each_section_validates_its_own_settings(section: object, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        section.validate()  # type: ignore[attr-defined]
    name = key.split(".")[0]
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        Config(**{name: section})  # type: ignore[arg-type]


def test_every_section_has_a_case_above() -> None:
    assert {key.split(".")[0] for _, key in BAD_SECTIONS} == {f.name for f in dataclasses.fields(Config)}
