"""docs/configuration.md lists every setting as pipeline/config.py defines it, and cannot drift."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline import config_docs
from pipeline.config import SETTING_EFFECTS, Config


def rows() -> dict[str, config_docs.Setting]:
    return {s.key: s for section in config_docs.sections() for s in section.settings}


def test_the_committed_page_is_what_the_generator_writes() -> None:
    page = config_docs.PAGE.read_text()
    assert config_docs.updated(page) == page, (
        f"docs/configuration.md is out of date with pipeline/config.py: run `{config_docs.COMMAND}`"
    )


def test_every_setting_has_a_row_with_its_comment() -> None:
    listed = rows()
    assert set(listed) == set(SETTING_EFFECTS)
    undocumented = sorted(key for key, s in listed.items() if not s.help)
    assert undocumented == [], f"give these settings a `#:` comment in pipeline/config.py: {undocumented}"
    lines = config_docs.render().splitlines()
    for key in SETTING_EFFECTS:
        assert len([line for line in lines if line.startswith(f"| `{key}` |")]) == 1, key
    assert [line for line in lines if line.startswith("### `")] == [
        f"### `{f.name}`" for f in dataclasses.fields(Config)
    ]


def test_type_default_effect_and_comment_are_read_from_the_code() -> None:
    listed = rows()
    assert listed["source.extensions"].type == "list of str"
    assert listed["source.extensions"].default.startswith('[".mp4", ".mov"')
    assert listed["decode.max_frames"] == config_docs.Setting(
        "decode.max_frames", "int", "5184000", "nothing", listed["decode.max_frames"].help
    )
    assert listed["decode.max_frames"].help.startswith("Most frames a video may hold (default: 24 hours at 60 fps).")
    # A comment of two lines is joined; the line above a setting's comment is not part of it.
    assert listed["shots.flash_min_rise"].help == "...and by which each of its frames does."
    assert listed["shots.threshold"].help == "A transition's peak probability (either head) must exceed this."
    assert (listed["scenes.threshold"].effect, listed["inference.precision"].effect) == (
        "derives scenes again",
        "decodes again",
    )
    assert (listed["storage.anonymous"].type, listed["storage.anonymous"].default) == ("bool", "false")
    assert (listed["inference.device"].default, listed["write.run_lease_s"].default) == ('"auto"', "600.0")


def test_a_stale_page_fails_the_check_and_is_rewritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "configuration.md"
    stale = f"# Configuration\n\nBy hand.\n\n{config_docs.BEGIN}\n| `shots.threshold` | float | `0.4` |\n{config_docs.END}\n\nAfter.\n"
    page.write_text(stale)
    assert config_docs.main(["--check", "--page", str(page)]) == 1
    assert f"run `{config_docs.COMMAND}`" in capsys.readouterr().err
    assert page.read_text() == stale  # --check writes nothing

    assert config_docs.main(["--page", str(page)]) == 0
    rewritten = page.read_text()
    assert rewritten.startswith("# Configuration\n\nBy hand.\n\n") and rewritten.endswith("\n\nAfter.\n")
    assert "| `shots.threshold` | float | `0.5` |" in rewritten and "`0.4`" not in rewritten
    assert config_docs.main(["--check", "--page", str(page)]) == 0


def test_a_page_without_markers_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n")
    with pytest.raises(ValueError, match="no generated part"):
        config_docs.main(["--page", str(page)])
