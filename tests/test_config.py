from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, ShotsConfig, config_from_dict, load_config
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


def test_digest_ignores_compute_but_not_model_settings() -> None:
    base = Config()
    assert config_from_dict({"compute": {"decode_actors": 3}}).digest() == base.digest()
    assert config_from_dict({"shots": {"threshold": 0.6}}).digest() != base.digest()
