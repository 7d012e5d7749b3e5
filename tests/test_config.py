from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from pipeline.config import DERIVED, NOTHING, OUTPUTS, SETTING_EFFECTS, Config, ShotsConfig, config_from_dict, load_config
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
    "decode.height": 180, "decode.segment_frames": 3000, "decode.threads": 4, "shots.threshold": 0.6,
    "shots.low_threshold": 0.3, "shots.extent_threshold": 0.4, "shots.gradual_min_frames": 4,
    "shots.min_shot_frames": 8, "shots.window_frames": 150, "shots.batch_windows": 2, "shots.precision": "fp32",
    "embed.stride_frames": 3, "embed.batch_size": 8, "embed.thumbnail_quality": 70,
    "keyframes.seconds_per_keyframe": 2.0, "keyframes.max_per_shot": 3, "keyframes.redundancy_cosine": 0.9,
    "keyframes.temperature": 0.2, "scenes.window_shots": 2, "scenes.threshold": 0.3, "scenes.temperature": 0.2,
    "compute.decode_actors": 2, "compute.model_actors": 2, "compute.decode_cpus": 0.25, "compute.model_cpus": 2.0,
    "compute.model_gpus": 0.5, "compute.max_inflight_mb": 512, "compute.embedded_object_store_mb": 512,
    "compute.model_threads": 1, "compute.fuse_on_cpu": False, "compute.device": "cpu",
    "write.commit_every_videos": 4, "write.run_lease_s": 60.0,
    "shots.flash_max_frames": 2, "shots.flash_luma_jump": 30.0, "shots.flash_min_rise": 6.0,
    "shots.flash_max_colour_change": 8.0, "keyframes.black_luma": 20.0, "keyframes.flash_luma_jump": 30.0,
    "keyframes.transition_probability": 0.2, "keyframes.sharpness_weight": 1.0, "scenes.reference_cosine": 0.5,
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
