"""`vindex report`: page layout, escaping, pagination; and the report rendered in headless Chromium."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from pipeline.errors import ReportError
from pipeline.index import report as report_module
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
from pipeline.index.report import esc, file_name, pager, timeline, write_report
from testkit import synthetic

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
HOSTILE_URI = 'file:///v/<script>alert("x")</script>&.mp4'


def jpeg(width: int = 64, height: int = 36, value: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _shot(index: int, start: int, end: int, transition: str) -> dict[str, object]:
    return {"video_id": "v", "shot_index": index, "start_frame": start, "end_frame": end, "start_s": start / 25,
            "end_s": (end + 1) / 25, "transition": transition, "boundary_score": None if index == 0 else 0.9}


def test_timeline_draws_cuts_as_lines_and_gradual_transitions_over_their_blend_frames() -> None:
    shots = [_shot(0, 0, 49, "start"), _shot(1, 50, 89, "cut"), _shot(2, 100, 199, "gradual")]
    scenes = [{"scene_index": 0, "first_shot": 0, "last_shot": 2, "start_frame": 0, "end_frame": 199,
               "start_s": 0.0, "end_s": 8.0}]
    keyframes = [{"frame": 24, "time_s": 0.96}]
    html = timeline(shots, scenes, keyframes, num_frames=200)
    assert '<div class="timeline" data-frames="200" data-shots="3" data-cuts="1" data-gradual="1" data-scenes="1">' in html
    assert re.findall(r'class="shot (?:even|odd)"[^>]*style="([^"]*)"', html) == [
        "left:0.0000%;width:25.0000%", "left:25.0000%;width:20.0000%", "left:50.0000%;width:50.0000%"
    ]
    assert '<div class="cut" data-frame="50" style="left:25.0000%"' in html
    # The blend frames 90..99 lie between shot 1's end and shot 2's start.
    assert '<div class="gradual" data-first-frame="90" data-last-frame="99" style="left:45.0000%;width:5.0000%"' in html
    assert '<a class="kf-mark" href="#kf-24" style="left:12.2500%"' in html


def test_pager_links_nearby_pages() -> None:
    html = pager(5, 20, lambda n: f"p{n}.html")
    assert re.findall(r'href="p(\d+)\.html"', html) == ["4", "1", "2", "3", "4", "6", "7", "8", "20", "6"]
    assert '<span class="current" aria-current="page">5</span>' in html
    assert pager(1, 1, lambda n: f"p{n}.html") == ""


def test_file_names_are_safe() -> None:
    assert file_name("8352fb80-a3df-57df-ae34-1b46012854ac") == "8352fb80-a3df-57df-ae34-1b46012854ac"
    for hostile in ("../../etc/passwd", "a/b", ".hidden", "x" * 101, "<b>"):
        name = file_name(hostile)
        assert re.fullmatch(r"h[0-9a-f]{32}", name), hostile
    assert esc('<a href="x">&</a>') == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"


@pytest.fixture
def hand_built(tmp_path: Path) -> Index:
    """Five videos (one failed with a hostile message, one with a hostile URI), two keyframes each."""
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    index.append_run({"run_id": "r1", "started_at": NOW, "finished_at": NOW, "source": "<src>", "status": "partial",
                      "counts": {"listed": 5, "new": 5, "changed": 0, "unchanged": 0, "deleted": 0, "ok": 4, "failed": 1, "frames": 400}})
    names = ["a", "b", "c", "d", "e"]
    videos = [{"video_id": n, "uri": f"file:///v/{n}.mp4", "status": "ok", "num_frames": 100, "fps": 25.0,
               "duration_s": 4.0, "num_shots": 2, "num_scenes": 1, "num_keyframes": 2, "run_id": "r1", "indexed_at": NOW}
              for n in names]
    videos[1]["uri"] = HOSTILE_URI
    videos[4].update(status="failed", error_stage="decode", error_message="bad <b>bytes</b> & more", num_shots=None)
    shots = [_shot(i, 50 * i, 50 * i + 49, "cut" if i else "start") | {"video_id": n, "run_id": "r1"}
             for n in names[:4] for i in range(2)]
    keyframes = [{"video_id": n, "shot_index": i, "scene_index": 0, "frame": 50 * i + 24, "time_s": (50 * i + 24) / 25,
                  "score": 1.0, "embedding": np.zeros(1280, np.float32), "thumbnail": jpeg(value=40 + 30 * i), "run_id": "r1"}
                 for n in names[:4] for i in range(2)]
    index.commit_videos({"videos": to_table("videos", videos), "shots": to_table("shots", shots),
                         "keyframes": to_table("keyframes", keyframes)})
    return index


def test_report_pages_thumbnails_and_escaping(hand_built: Index, tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = write_report(hand_built, out, videos_per_page=2)
    assert (summary.videos, summary.list_pages, summary.failed_pages, summary.thumbnails) == (5, 3, 1, 8)
    assert sorted(p.name for p in out.glob("*.html")) == ["failed.html", "index.html", "videos-2.html", "videos-3.html"]
    assert sorted(p.name for p in (out / "video").iterdir()) == [f"{n}.html" for n in "abcde"]
    thumbs = sorted(str(p.relative_to(out / "thumbs")) for p in (out / "thumbs").rglob("*.jpg"))
    assert thumbs == [f"{n}/{f}.jpg" for n in "abcd" for f in (24, 74)]
    assert (out / "thumbs" / "a" / "74.jpg").read_bytes() == jpeg(value=70)

    pages = {p.name: p.read_text() for p in out.rglob("*.html")}
    everything = "\n".join(pages.values())
    for raw in ("<script", "<b>bytes", "<src>"):
        assert raw not in everything
    assert "file:///v/&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;.mp4" in pages["b.html"]
    assert "bad &lt;b&gt;bytes&lt;/b&gt; &amp; more" in pages["index.html"]
    assert "&lt;src&gt;" in pages["index.html"]
    # Nothing is fetched from elsewhere: every src and href is relative.
    links = re.findall(r'(?:src|href)="([^"]*)"', everything)
    assert links and not [link for link in links if re.match(r"[a-z]+:|//", link)]
    # Sorted by URI ("file:///v/<script>..." before "file:///v/a.mp4"), two a page.
    order = [re.findall(r'<tr id="v-(\w+)"', pages[name]) for name in ("index.html", "videos-2.html", "videos-3.html")]
    assert order == [["b", "a"], ["c", "d"], ["e"]]
    assert '<a rel="next" href="videos-2.html">' in pages["index.html"]
    assert 'href="../videos-2.html#v-c"' in pages["c.html"]
    assert 'href="b.html"' in pages["a.html"] and 'href="c.html"' in pages["a.html"]


def test_report_into_a_place_that_cannot_hold_it(hand_built: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", hand_built.uri, "--out", str(blocker / "report")]) == EXIT_USAGE
    assert f"cannot write the report into {blocker / 'report'}" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err


def test_report_of_an_empty_index(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    summary = write_report(index, tmp_path / "report")
    assert (summary.videos, summary.list_pages, summary.thumbnails) == (0, 1, 0)
    assert "Videos (none)" in (tmp_path / "report" / "index.html").read_text()


# --------------------------------------------------------------------------- where a report may go


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's bytes, a link's target, or ``<dir>``."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            found[relative] = "-> " + str(path.readlink())
        elif path.is_dir():
            found[relative] = "<dir>"
        else:
            found[relative] = repr(path.read_bytes())
    return found


def test_a_link_in_the_report_folder_is_never_written_through(
    hand_built: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    out = tmp_path / "report"
    out.mkdir()
    (out / "failed.html").symlink_to("../notes.txt")
    assert main(["report", hand_built.uri, "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{out} is not empty and is not a vindex report" in err and "choose a new or empty folder" in err
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert _tree(out) == {"failed.html": "-> ../notes.txt"}

    # The same link planted in an earlier report: refused too, and never followed.
    earlier = tmp_path / "earlier"
    write_report(hand_built, earlier)
    (earlier / "failed.html").unlink()
    (earlier / "failed.html").symlink_to("../notes.txt")
    before = _tree(earlier)
    with pytest.raises(ReportError, match=r"holds files a report does not write \(failed.html\)"):
        write_report(hand_built, earlier)
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert _tree(earlier) == before


def test_a_report_folder_that_is_a_link_is_refused(hand_built: Index, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "report").symlink_to(target, target_is_directory=True)
    with pytest.raises(ReportError, match="is a symbolic link: a report is written only into a real folder"):
        write_report(hand_built, tmp_path / "report")
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "idx", "report"]


def test_a_folder_that_is_not_a_report_is_refused_and_left_untouched(
    hand_built: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    (out / "video").mkdir(parents=True)
    (out / "index.html").write_text("my page")
    (out / "video" / "holiday.mp4").write_bytes(b"holiday")
    before = _tree(out)
    assert main(["report", hand_built.uri, "--out", str(out)]) == EXIT_USAGE
    assert "is not empty and is not a vindex report (no _VINDEX_REPORT.json): nothing was changed" in capsys.readouterr().err
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "mine"]


def test_an_earlier_report_holding_other_files_is_refused(hand_built: Index, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(hand_built, out)
    (out / "thumbs" / "a" / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(ReportError, match=r"holds files a report does not write \(thumbs/a/notes.txt\)"):
        write_report(hand_built, out)
    assert _tree(out) == before


def test_an_earlier_report_is_replaced_whole(hand_built: Index, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(hand_built, out, videos_per_page=2)
    assert (out / "videos-3.html").exists()
    summary = write_report(hand_built, out, videos_per_page=100)
    assert summary.out_dir == out and summary.list_pages == 1
    # The earlier report's pages are gone with it, not left beside the new ones.
    assert sorted(p.name for p in out.glob("*.html")) == ["failed.html", "index.html"]
    assert json.loads((out / "_VINDEX_REPORT.json").read_text())["format"] == "vindex-report/1"
    # No temporary or renamed-away folder is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "report"]


def test_a_new_or_empty_folder_takes_a_report(hand_built: Index, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (empty, tmp_path / "new" / "deeper"):
        summary = write_report(hand_built, out)
        assert summary.index_page == out / "index.html" and summary.index_page.is_file()
        assert (out / "_VINDEX_REPORT.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "idx", "new"]


def test_a_failed_report_leaves_the_earlier_one_whole(
    hand_built: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    write_report(hand_built, out, videos_per_page=1)
    before = _tree(out)

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    # Fails after the thumbnails and every video page (each now linking back to page 1) are written.
    monkeypatch.setattr(report_module, "_overview", broken)
    with pytest.raises(OSError, match="No space left on device"):
        write_report(hand_built, out, videos_per_page=100)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "report"]


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def report_dir(ray_local, tmp_path_factory: pytest.TempPathFactory, mixed_clip: tuple[Path, synthetic.ClipTruth]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """A clip with a cut, a dissolve, a fade and a cut, plus a corrupt file, indexed and reported."""
    folder = tmp_path_factory.mktemp("report-src")
    (folder / "mixed.mp4").write_bytes(mixed_clip[0].read_bytes())
    synthetic.write_random_bytes(folder / 'bad <i>name & "co".mp4', 20000, seed=5)
    root = tmp_path_factory.mktemp("report")
    index_path, out = root / "idx", root / "out"
    assert main(["run", str(folder), "--index", str(index_path), "--quiet"]) == EXIT_SOME_FAILED
    assert main(["report", str(index_path), "--out", str(out)]) == EXIT_OK
    keyframes = Index(str(index_path)).read("keyframes", columns=["video_id"]).column("video_id").to_pylist()
    return {"out": out, "truth": mixed_clip[1], "keyframes": keyframes}


LOAD_ALL_IMAGES = """async () => {
    const images = [...document.images];
    images.forEach(image => { image.loading = "eager"; });
    await Promise.all(images.map(image => image.complete && image.naturalWidth ? null
        : new Promise(done => { image.onload = done; image.onerror = done; })));
    return images.map(image => ({src: image.getAttribute("src"), width: image.naturalWidth}));
}"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed (Debian package `chromium`)")
def test_report_in_headless_chromium(report_dir: dict[str, object], tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    out: Path = report_dir["out"]  # type: ignore[assignment]
    truth: synthetic.ClipTruth = report_dir["truth"]  # type: ignore[assignment]
    keyframes: list[str] = report_dir["keyframes"]  # type: ignore[assignment]
    outside: list[str] = []

    def only_files(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            browser.route("**/*", only_files)
            page = browser.new_page()
            page.goto((out / "index.html").as_uri())
            index_images = page.evaluate(LOAD_ALL_IMAGES)
            assert len(index_images) == 1 and index_images[0]["width"] > 0  # the ok video's poster
            failed_text = page.locator("table.failures").inner_text()
            assert 'bad <i>name & "co".mp4' in failed_text and "not a readable video container" in failed_text
            assert page.locator("table.failures td.stage").all_inner_texts() == ["probe"]

            page.locator("td.uri a", has_text="mixed.mp4").click()
            page.wait_for_load_state()
            timeline = page.locator(".timeline")
            counts = {name: timeline.get_attribute(f"data-{name}") for name in ("shots", "cuts", "gradual")}
            cuts = sum(1 for t in truth.transitions if t.kind == "cut")
            expected = {"shots": str(len(truth.shots)), "cuts": str(cuts), "gradual": str(len(truth.transitions) - cuts)}
            assert counts == expected
            # What is drawn matches what is declared: one block per shot, one mark per transition.
            assert page.locator(".timeline .shot").count() == len(truth.shots)
            assert page.locator(".timeline .cut").count() == cuts
            assert page.locator(".timeline .gradual").count() == len(truth.transitions) - cuts
            boxes = [page.locator(".timeline .shot").nth(i).bounding_box() for i in range(len(truth.shots))]
            assert all(box is not None and box["width"] > 0 for box in boxes)
            lefts = [box["x"] for box in boxes if box is not None]
            assert lefts == sorted(lefts)
            images = page.evaluate(LOAD_ALL_IMAGES)
            video_id = page.locator("dl.facts code").first.inner_text()
            assert len(images) == keyframes.count(video_id) >= len(truth.shots)
            assert [image["src"] for image in images if image["width"] <= 0] == []
            screenshot = tmp_path / "video.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    assert outside == []
