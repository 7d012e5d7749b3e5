"""A static HTML report of an index that opens offline in any browser.

Layout of the output folder::

    index.html            runs, counts, failed videos, page 1 of the video list
    videos-N.html         page N of the video list (``videos_per_page`` videos a page)
    failed.html, failed-N.html
                          every failed video with its stage and message
    video/ID.html         one page per video: shot and scene timeline, keyframe thumbnails
    thumbs/ID/FRAME.jpg   keyframe thumbnails, the JPEGs stored in the keyframes table
    report.css            the only style sheet; nothing is fetched from elsewhere
    _VINDEX_REPORT.json   marks the folder as a vindex report (written last)

A report is built in a new sibling folder (``DIR.tmp-XXXX``) and renamed into place, so
nothing is ever written through a link or file that was already there, and ``DIR`` holds
either the previous report or the new one, whole. ``DIR`` must be absent, empty or an
earlier report (its marker, and only the files a report writes); an earlier report is
renamed away (``DIR.old-XXXX``) and deleted only once the new one is in place.

The keyframes table is read once, in record batches, and each thumbnail is written to its
file as it arrives, so thumbnails are never all in memory; the pages are then written one
video at a time from the small columns of the shots, scenes and keyframes tables.
Everything that comes from the data (URIs, messages, ...) is HTML-escaped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import io
import itertools
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.errors import ReportError
from pipeline.index.snapshot import Snapshot
from pipeline.index.status import Failure, count_by_status, failures, latest_runs, runs_table

log = logging.getLogger(__name__)

VIDEOS_PER_PAGE = 100
#: The file that marks a folder as a vindex report; written last into the new report.
MARKER = "_VINDEX_REPORT.json"
#: Format tag in the marker.
REPORT_FORMAT = "vindex-report/1"
FAILURES_ON_INDEX = 20
RUNS_SHOWN = 50
#: Rows per record batch when streaming thumbnails out of the keyframes table.
THUMBNAIL_BATCH_ROWS = 256
#: Page links either side of the current page in a pager.
PAGER_SPAN = 3

VIDEO_COLUMNS = [
    "video_id", "uri", "status", "error_stage", "error_message", "warnings", "duration_s", "fps",
    "num_frames", "width", "height", "codec", "num_shots", "num_scenes", "num_keyframes", "run_id", "indexed_at",
]
SHOT_COLUMNS = ["video_id", "shot_index", "start_frame", "end_frame", "start_s", "end_s", "transition", "boundary_score"]
SCENE_COLUMNS = ["video_id", "scene_index", "first_shot", "last_shot", "start_frame", "end_frame", "start_s", "end_s"]
KEYFRAME_COLUMNS = ["video_id", "shot_index", "scene_index", "frame", "time_s", "score"]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
#: The files a report writes at its top level, in ``video/`` and in ``thumbs/VIDEO/``: an
#: earlier report is deleted only if it holds nothing else.
_TOP_FILE = re.compile(r"index\.html|videos-[0-9]+\.html|failed(?:-[0-9]+)?\.html|report\.css|" + re.escape(MARKER))
_VIDEO_PAGE = re.compile(r"[A-Za-z0-9._-]+\.html")
_THUMBNAIL_FOLDER = re.compile(r"[A-Za-z0-9._-]+")
_THUMBNAIL = re.compile(r"[0-9]+\.jpg")


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote."""

    out_dir: Path
    videos: int
    list_pages: int
    failed_pages: int
    thumbnails: int

    @property
    def index_page(self) -> Path:
        return self.out_dir / "index.html"


def esc(value: Any) -> str:
    """Text from the data, safe in HTML text and in quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def file_name(video_id: str) -> str:
    """A file-system-safe name for a video's page and thumbnail folder."""
    if _SAFE_NAME.match(video_id):
        return video_id
    return "h" + hashlib.sha256(video_id.encode()).hexdigest()[:32]


def list_page_name(page: int) -> str:
    return "index.html" if page == 1 else f"videos-{page}.html"


def failed_page_name(page: int) -> str:
    return "failed.html" if page == 1 else f"failed-{page}.html"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(value, 60.0)
    return f"{int(minutes)}:{seconds:04.1f}"


def _page(title: str, body: str, root: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<link rel=\"stylesheet\" href=\"{root}report.css\">\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def pager(current: int, pages: int, name_of: Callable[[int], str], root: str = "") -> str:
    """Links to the first, previous, nearby, next and last pages."""
    if pages <= 1:
        return ""
    shown = sorted({1, pages, *range(max(1, current - PAGER_SPAN), min(pages, current + PAGER_SPAN) + 1)})
    parts = []
    if current > 1:
        parts.append(f'<a rel="prev" href="{root}{name_of(current - 1)}">&larr; previous</a>')
    previous = 0
    for page in shown:
        if page - previous > 1:
            parts.append('<span class="gap">&hellip;</span>')
        if page == current:
            parts.append(f'<span class="current" aria-current="page">{page}</span>')
        else:
            parts.append(f'<a href="{root}{name_of(page)}">{page}</a>')
        previous = page
    if current < pages:
        parts.append(f'<a rel="next" href="{root}{name_of(current + 1)}">next &rarr;</a>')
    return f'<nav class="pager" data-page="{current}" data-pages="{pages}">' + " ".join(parts) + "</nav>"


def _nav(root: str, failed_count: int) -> str:
    failed = f' <a href="{root}failed.html">failed videos ({failed_count})</a>' if failed_count else ""
    return f'<header class="top"><a href="{root}index.html"><strong>vindex report</strong></a>{failed}</header>'


def _status_badge(status: str | None) -> str:
    name = status or "unknown"
    css = name if name in ("ok", "failed", "deleted") else "other"
    return f'<span class="status {css}">{esc(name)}</span>'


# --------------------------------------------------------------------------- data


class _Groups:
    """Rows of a table grouped by ``video_id``: sorted once, sliced per video."""

    def __init__(self, table: pa.Table, order: str) -> None:
        self.table = table.sort_by([("video_id", "ascending"), (order, "ascending")])
        self.spans: dict[str, tuple[int, int]] = {}
        start = 0
        for video_id, rows in itertools.groupby(self.table.column("video_id").to_pylist()):
            count = sum(1 for _ in rows)
            self.spans[video_id] = (start, count)
            start += count

    def rows(self, video_id: str) -> list[dict[str, Any]]:
        span = self.spans.get(video_id)
        return self.table.slice(*span).to_pylist() if span else []


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's header, or None if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _write_thumbnails(index: Snapshot, out: Path) -> tuple[pa.Table, int]:
    """Stream the keyframes table: each JPEG thumbnail to its file; returns the keyframes'
    small columns (with each thumbnail's width and height, null if none) and the count."""
    scanner = index.dataset("keyframes").scanner(
        columns=[*KEYFRAME_COLUMNS, "thumbnail"], batch_size=THUMBNAIL_BATCH_ROWS, batch_readahead=1, fragment_readahead=1
    )
    pieces: list[pa.Table] = []
    made: set[str] = set()
    written = 0
    for batch in scanner.to_batches():
        widths: list[int | None] = []
        heights: list[int | None] = []
        for video_id, frame, data in zip(
            batch.column("video_id").to_pylist(), batch.column("frame").to_pylist(), batch.column("thumbnail").to_pylist()
        ):
            size = _jpeg_size(data) if data else None
            if size is not None:
                folder = out / "thumbs" / file_name(video_id)
                if video_id not in made:
                    folder.mkdir(parents=True, exist_ok=True)
                    made.add(video_id)
                (folder / f"{int(frame)}.jpg").write_bytes(data)
                written += 1
            widths.append(size[0] if size else None)
            heights.append(size[1] if size else None)
        small = pa.Table.from_batches([batch.drop_columns(["thumbnail"])])
        small = small.append_column("thumb_width", pa.array(widths, pa.int32()))
        pieces.append(small.append_column("thumb_height", pa.array(heights, pa.int32())))
    if not pieces:
        empty = index.dataset("keyframes").schema.empty_table().select(KEYFRAME_COLUMNS)
        empty = empty.append_column("thumb_width", pa.array([], pa.int32()))
        return empty.append_column("thumb_height", pa.array([], pa.int32())), 0
    return pa.concat_tables(pieces), written


# --------------------------------------------------------------------------- video pages


def _percent(frames: float, total: int) -> str:
    return f"{100.0 * frames / total:.4f}%"


def timeline(shots: list[dict[str, Any]], scenes: list[dict[str, Any]], keyframes: list[dict[str, Any]], num_frames: int | None) -> str:
    """A video's shots, transitions, scenes and keyframes along its frames.

    Cuts are drawn as lines, gradual transitions as hatched bands over their blend frames.
    """
    last = max([s["end_frame"] for s in shots] + [s["end_frame"] for s in scenes] + [k["frame"] for k in keyframes] + [0])
    total = max(num_frames or 0, last + 1, 1)
    cuts = sum(1 for s in shots if s["transition"] == "cut")
    gradual = sum(1 for s in shots if s["transition"] == "gradual")
    shot_track, marks = [], []
    for i, shot in enumerate(shots):
        start, end = shot["start_frame"], shot["end_frame"]
        title = f"shot {shot['shot_index']}: frames {start}-{end}, {_seconds(shot['start_s'])} to {_seconds(shot['end_s'])}"
        shot_track.append(
            f'<a class="shot {"odd" if i % 2 else "even"}" href="#shot-{esc(shot["shot_index"])}" '
            f'data-shot-index="{esc(shot["shot_index"])}" data-transition="{esc(shot["transition"])}" '
            f'style="left:{_percent(start, total)};width:{_percent(end - start + 1, total)}" title="{esc(title)}">'
            f'<span>{esc(shot["shot_index"])}</span></a>'
        )
        score = shot["boundary_score"]
        score_text = f" (score {score:.2f})" if score is not None else ""
        if shot["transition"] == "cut":
            title = f"cut at frame {start}, {_seconds(shot['start_s'])}{score_text}"
            marks.append(
                f'<div class="cut" data-frame="{start}" style="left:{_percent(start, total)}" title="{esc(title)}"></div>'
            )
        elif shot["transition"] == "gradual" and i > 0:
            first = shots[i - 1]["end_frame"] + 1
            title = f"gradual transition, frames {first}-{start - 1}{score_text}"
            marks.append(
                f'<div class="gradual" data-first-frame="{first}" data-last-frame="{start - 1}" '
                f'style="left:{_percent(first, total)};width:{_percent(max(start - first, 0), total)}" '
                f'title="{esc(title)}"></div>'
            )
    keyframe_marks = [
        f'<a class="kf-mark" href="#kf-{k["frame"]}" style="left:{_percent(k["frame"] + 0.5, total)}" '
        f'title="keyframe at frame {k["frame"]}, {_seconds(k["time_s"])}"></a>'
        for k in keyframes
    ]
    scene_track = []
    for i, scene in enumerate(scenes):
        start, end = scene["start_frame"], scene["end_frame"]
        title = (
            f"scene {scene['scene_index']}: shots {scene['first_shot']}-{scene['last_shot']}, "
            f"{_seconds(scene['start_s'])} to {_seconds(scene['end_s'])}"
        )
        scene_track.append(
            f'<div class="scene {"odd" if i % 2 else "even"}" data-scene-index="{esc(scene["scene_index"])}" '
            f'style="left:{_percent(start, total)};width:{_percent(end - start + 1, total)}" title="{esc(title)}">'
            f'<span>scene {esc(scene["scene_index"])}</span></div>'
        )
    return (
        f'<div class="timeline" data-frames="{total}" data-shots="{len(shots)}" data-cuts="{cuts}" '
        f'data-gradual="{gradual}" data-scenes="{len(scenes)}">\n'
        f'<div class="track shots">{"".join(shot_track)}{"".join(marks)}</div>\n'
        f'<div class="track keyframes">{"".join(keyframe_marks)}</div>\n'
        f'<div class="track scenes">{"".join(scene_track)}</div>\n'
        "</div>\n"
        '<p class="legend"><span class="swatch swatch-cut"></span> cut '
        '<span class="swatch swatch-gradual"></span> gradual transition (dissolve, fade) '
        '<span class="swatch swatch-kf"></span> keyframe</p>'
    )


def _figure(video_key: str, keyframe: dict[str, Any]) -> str:
    frame = int(keyframe["frame"])
    caption = f"{_seconds(keyframe['time_s'])} &middot; frame {frame}"
    if keyframe["thumb_width"] is None:
        image = '<div class="no-thumb">no thumbnail</div>'
    else:
        image = (
            f'<img src="../thumbs/{video_key}/{frame}.jpg" width="{keyframe["thumb_width"]}" '
            f'height="{keyframe["thumb_height"]}" loading="lazy" alt="keyframe at frame {frame}">'
        )
    return f'<figure class="keyframe" id="kf-{frame}">{image}<figcaption>{caption}</figcaption></figure>'


def video_page(
    video: dict[str, Any],
    shots: list[dict[str, Any]],
    scenes: list[dict[str, Any]],
    keyframes: list[dict[str, Any]],
    *,
    back: str,
    previous: str | None,
    following: str | None,
    failed_count: int,
) -> str:
    """The page of one video (links are relative to the ``video/`` folder)."""
    key = file_name(video["video_id"])
    facts = [
        ("status", _status_badge(video["status"])),
        ("video id", f"<code>{esc(video['video_id'])}</code>"),
        ("duration", esc(_duration(video["duration_s"]))),
        ("frames", esc(video["num_frames"] if video["num_frames"] is not None else "-")),
        ("frame rate", esc(f"{video['fps']:.3f} fps" if video["fps"] else "-")),
        ("size", esc(f"{video['width']}x{video['height']}" if video["width"] else "-")),
        ("codec", esc(video["codec"] or "-")),
        ("shots / scenes / keyframes", esc(f"{len(shots)} / {len(scenes)} / {len(keyframes)}")),
        ("indexed", esc(f"{video['indexed_at']:%Y-%m-%d %H:%M:%S} UTC" if video["indexed_at"] else "-")),
        ("run", f"<code>{esc(video['run_id'])}</code>"),
    ]
    parts = [
        _nav("../", failed_count),
        f'<nav class="siblings"><a href="{back}">&uarr; all videos</a>'
        + (f' <a rel="prev" href="{previous}">&larr; previous video</a>' if previous else "")
        + (f' <a rel="next" href="{following}">next video &rarr;</a>' if following else "")
        + "</nav>",
        f'<h1 class="uri">{esc(video["uri"])}</h1>',
        '<dl class="facts">' + "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in facts) + "</dl>",
    ]
    if video["status"] == "failed":
        parts.append(
            f'<p class="error">Failed at stage <strong>{esc(video["error_stage"])}</strong>: '
            f'{esc(video["error_message"])}</p>'
        )
    if video["warnings"]:
        parts.append(f'<p class="warning">Warnings: {esc(video["warnings"])}</p>')
    if shots:
        parts.append("<h2>Timeline</h2>")
        parts.append(timeline(shots, scenes, keyframes, video["num_frames"]))
    if shots:
        parts.append("<h2>Shots and keyframes</h2>")
        by_shot: dict[int, list[dict[str, Any]]] = {}
        for keyframe in keyframes:
            by_shot.setdefault(keyframe["shot_index"], []).append(keyframe)
        cards = []
        for shot in shots:
            transition = shot["transition"]
            figures = "".join(_figure(key, k) for k in by_shot.get(shot["shot_index"], []))
            cards.append(
                f'<section class="shot-card" id="shot-{esc(shot["shot_index"])}">'
                f'<h3>Shot {esc(shot["shot_index"])} <span class="badge kind-{esc(transition)}">{esc(transition)}</span></h3>'
                f'<p class="span">{esc(_seconds(shot["start_s"]))} &ndash; {esc(_seconds(shot["end_s"]))} &middot; frames '
                f'{esc(shot["start_frame"])}&ndash;{esc(shot["end_frame"])}</p>'
                f'<div class="keyframes">{figures}</div></section>'
            )
        parts.append('<div class="shot-grid">' + "".join(cards) + "</div>")
    if scenes:
        rows = "".join(
            f'<tr><td>{esc(s["scene_index"])}</td><td>{esc(s["first_shot"])}&ndash;{esc(s["last_shot"])}</td>'
            f'<td>{esc(_seconds(s["start_s"]))}</td><td>{esc(_seconds(s["end_s"]))}</td>'
            f'<td>{esc(s["start_frame"])}&ndash;{esc(s["end_frame"])}</td></tr>'
            for s in scenes
        )
        parts.append(
            "<h2>Scenes</h2><table class=\"scenes\"><thead><tr><th>scene</th><th>shots</th><th>start</th>"
            f"<th>end</th><th>frames</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return _page(f"{video['uri']} - vindex report", "\n".join(parts), root="../")


# --------------------------------------------------------------------------- list pages


def _video_row(video: dict[str, Any], poster: dict[str, Any] | None) -> str:
    key = file_name(video["video_id"])
    thumb = ""
    if poster is not None and poster["thumb_width"] is not None:
        thumb = (
            f'<img src="thumbs/{key}/{int(poster["frame"])}.jpg" width="{poster["thumb_width"]}" '
            f'height="{poster["thumb_height"]}" loading="lazy" alt="">'
        )
    if video["status"] == "failed":
        note = f'<span class="error">[{esc(video["error_stage"])}] {esc(video["error_message"])}</span>'
    else:
        note = f'<span class="warning">{esc(video["warnings"])}</span>' if video["warnings"] else ""

    def number(value: Any) -> str:
        return "-" if value is None else esc(value)

    return (
        f'<tr id="v-{key}" class="video"><td class="poster">{thumb}</td>'
        f'<td class="uri"><a href="video/{key}.html">{esc(video["uri"])}</a></td>'
        f'<td>{_status_badge(video["status"])}</td><td class="num">{esc(_duration(video["duration_s"]))}</td>'
        f'<td class="num">{number(video["num_shots"])}</td><td class="num">{number(video["num_scenes"])}</td>'
        f'<td class="num">{number(video["num_keyframes"])}</td><td>{note}</td></tr>'
    )


def _video_table(rows: list[str]) -> str:
    return (
        '<table class="videos"><thead><tr><th></th><th>video</th><th>status</th><th>duration</th><th>shots</th>'
        "<th>scenes</th><th>keyframes</th><th>notes</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _failure_table(items: list[Failure]) -> str:
    rows = "".join(
        f'<tr class="failure"><td class="uri"><a href="video/{file_name(f.video_id)}.html">{esc(f.uri)}</a></td>'
        f'<td class="stage">{esc(f.stage)}</td><td class="message">{esc(f.message)}</td>'
        f"<td><code>{esc(f.run_id)}</code></td></tr>"
        for f in items
    )
    return (
        '<table class="failures"><thead><tr><th>video</th><th>stage</th><th>reason</th><th>run</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _overview(index: Snapshot, by_status: dict[str, int], failed: list[Failure]) -> str:
    runs, total_runs = latest_runs(index, RUNS_SHOWN)
    rows = {name: index.dataset(name).count_rows() for name in ("shots", "scenes", "keyframes")}
    counts = "".join(f'<div class="count"><b>{n:,}</b> {esc(name)}</div>' for name, n in by_status.items())
    counts += "".join(f'<div class="count"><b>{n:,}</b> {esc(name)}</div>' for name, n in rows.items())
    counts += "".join(f'<div class="count"><b>{n:,}</b> {esc(name)}</div>' for name, n in _duplicates(index).items())
    parts = [f"<h1>Index <code>{esc(index.uri)}</code></h1>", f'<div class="counts">{counts}</div>', "<h2>Runs</h2>"]
    if runs:
        table = runs_table(runs)
        head = "".join(f"<th>{esc(c)}</th>" for c in table.column_names)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc('-' if v is None else v)}</td>" for v in row.values()) + "</tr>"
            for row in table.to_pylist()
        )
        parts.append(f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        if total_runs > len(runs):
            parts.append(f"<p>{total_runs - len(runs)} earlier runs not shown.</p>")
    else:
        parts.append("<p>No runs yet.</p>")
    if failed:
        parts.append(f"<h2>Failed videos ({len(failed):,})</h2>")
        parts.append(_failure_table(failed[:FAILURES_ON_INDEX]))
        if len(failed) > FAILURES_ON_INDEX:
            parts.append(f'<p><a href="failed.html">All {len(failed):,} failed videos</a></p>')
    return "\n".join(parts)


def _duplicates(index: Snapshot) -> dict[str, int]:
    """How many current shots and videos `vindex dedup` found to be copies of another (none
    where it has not run)."""
    from pipeline.index.dedup import current_duplicates
    from pipeline.index.schemas import DUPLICATES_TABLE

    if index.versions is not None or not index.exists(DUPLICATES_TABLE):
        return {}
    found = {}
    for level in ("shot", "video"):
        rows = current_duplicates(index, level).column("is_representative").to_pylist()
        found[f"duplicate {level}s"] = sum(1 for representative in rows if not representative)
    return found


# --------------------------------------------------------------------------- the report


def _chunks(count: int, size: int) -> Iterator[tuple[int, int]]:
    for page, start in enumerate(range(0, count, size), start=1):
        yield page, start


def write_report(index: Snapshot, out_dir: str | os.PathLike[str], *, videos_per_page: int = VIDEOS_PER_PAGE) -> ReportSummary:
    """Write the report of ``index`` into the local folder ``out_dir``: a new folder, an empty
    one, or an earlier report, which it replaces (see the module's docstring)."""
    if videos_per_page < 1:
        raise ValueError(f"videos_per_page must be at least 1, got {videos_per_page}")
    # Absolute, so that the temporary sibling folders sit beside it even for "." or "x/..".
    out = Path(os.path.abspath(out_dir))
    if not out.name:
        raise ReportError(f"{out} cannot hold a report: choose a new or empty folder")
    earlier = _check_destination(out)
    videos = index.dataset("videos").to_table(columns=VIDEO_COLUMNS).sort_by([("uri", "ascending"), ("video_id", "ascending")])
    staging = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # new, so no link or file inside it predates the report
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
    try:
        summary = _write_pages(index, videos, staging, videos_per_page)
        (staging / MARKER).write_text(json.dumps(_marker(), indent=2, sort_keys=True), encoding="utf-8")
        _swap_in(staging, out, earlier)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataclasses.replace(summary, out_dir=out)


def _check_destination(out: Path) -> bool:
    """Whether ``out`` is an earlier report (to replace); False where it is absent or empty.
    Anything else is refused: a link, a file, a folder holding what a report does not write."""
    if out.is_symlink():
        raise ReportError(
            f"{out} is a symbolic link: a report is written only into a real folder; choose a new or empty folder"
        )
    if not out.exists():
        return False
    if not out.is_dir():
        raise ReportError(f"{out} is a file, not a folder: choose a new or empty folder")
    try:
        if not any(out.iterdir()):
            return False
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
    foreign = _foreign_files(out)
    if foreign is None:
        raise ReportError(
            f"{out} is not empty and is not a vindex report (no {MARKER}): nothing was changed; "
            "choose a new or empty folder"
        )
    if foreign:
        raise ReportError(
            f"{out} is an earlier vindex report, but it holds files a report does not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): nothing was changed; "
            "move them out, or choose a new or empty folder"
        )
    return True


def _foreign_files(folder: Path) -> list[str] | None:
    """None where ``folder`` has no report marker; else what it holds that a report does not
    write (links included: a report writes none), as paths relative to ``folder``."""
    marker = folder / MARKER
    try:
        if marker.is_symlink() or json.loads(marker.read_text(encoding="utf-8")).get("format") != REPORT_FORMAT:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    foreign: list[str] = []

    def check(path: Path, relative: str, kind: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            name = f"{relative}{entry.name}"
            is_file = entry.is_file(follow_symlinks=False)
            is_dir = entry.is_dir(follow_symlinks=False)
            if kind == "top" and is_file and _TOP_FILE.fullmatch(entry.name):
                continue
            elif kind == "top" and is_dir and entry.name in ("video", "thumbs"):
                check(Path(entry.path), name + "/", entry.name)
            elif kind == "video" and is_file and _VIDEO_PAGE.fullmatch(entry.name):
                continue
            elif kind == "thumbs" and is_dir and _THUMBNAIL_FOLDER.fullmatch(entry.name):
                check(Path(entry.path), name + "/", "thumbnails")
            elif kind == "thumbnails" and is_file and _THUMBNAIL.fullmatch(entry.name):
                continue
            else:
                foreign.append(name + ("/" if is_dir else ""))

    try:
        check(folder, "", "top")
    except OSError as exc:
        raise ReportError(f"cannot read the earlier report in {folder}: {exc.strerror or exc}") from exc
    return foreign


def _swap_in(staging: Path, out: Path, earlier: bool) -> None:
    """Rename the finished report to ``out``; an earlier report there is renamed away first and
    deleted only once the new one is in place (and only if it still holds nothing but a report)."""
    try:
        if not earlier:
            # Onto an absent or empty folder; fails (ENOTEMPTY) if a file appeared meanwhile.
            staging.rename(out)
            return
        old = out.with_name(f"{out.name}.old-{uuid.uuid4().hex[:12]}")
        out.rename(old)
        try:
            staging.rename(out)
        except OSError:
            old.rename(out)
            raise
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
    if _foreign_files(old) != []:
        log.warning("the earlier report, moved to %s, now holds other files: left there", old)
        return
    try:
        shutil.rmtree(old)
    except OSError as exc:  # the new report is in place; only the old one's removal failed
        log.warning("the earlier report, moved to %s, could not be deleted: %s", old, exc.strerror or exc)
    else:
        log.info("replaced the earlier report in %s", out)


def _marker() -> dict[str, Any]:
    return {"format": REPORT_FORMAT, "written_at": dt.datetime.now(dt.timezone.utc).isoformat()}


def _write_pages(index: Snapshot, videos: pa.Table, out: Path, videos_per_page: int) -> ReportSummary:
    """Every page, the style sheet and the thumbnails, into the new folder ``out``."""
    try:
        (out / "video").mkdir()
        (out / "report.css").write_text(STYLE, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc

    keyframe_rows, thumbnails = _write_thumbnails(index, out)
    keyframes = _Groups(keyframe_rows, "frame")
    shots = _Groups(index.dataset("shots").to_table(columns=SHOT_COLUMNS), "shot_index")
    scenes = _Groups(index.dataset("scenes").to_table(columns=SCENE_COLUMNS), "scene_index")
    failed = failures(index)
    by_status = count_by_status(videos.column("status"))

    count = videos.num_rows
    pages = max(1, math.ceil(count / videos_per_page))
    ids = videos.column("video_id").to_pylist()
    for page, start in itertools.chain(_chunks(count, videos_per_page), [] if count else [(1, 0)]):
        rows = []
        for offset, video in enumerate(videos.slice(start, videos_per_page).to_pylist()):
            position = start + offset
            video_id = video["video_id"]
            own_keyframes = keyframes.rows(video_id)
            previous = f"{file_name(ids[position - 1])}.html" if position > 0 else None
            following = f"{file_name(ids[position + 1])}.html" if position + 1 < count else None
            page_html = video_page(
                video, shots.rows(video_id), scenes.rows(video_id), own_keyframes,
                back=f"../{list_page_name(page)}#v-{file_name(video_id)}",
                previous=previous, following=following, failed_count=len(failed),
            )
            (out / "video" / f"{file_name(video_id)}.html").write_text(page_html, encoding="utf-8")
            rows.append(_video_row(video, own_keyframes[0] if own_keyframes else None))
        body = [_nav("", len(failed))]
        if page == 1:
            body.append(_overview(index, by_status, failed))
        shown = f"{start + 1:,}-{start + len(rows):,} of {count:,}" if rows else "none"
        body.append(f"<h2>Videos ({shown})</h2>")
        body.append(pager(page, pages, list_page_name))
        body.append(_video_table(rows))
        body.append(pager(page, pages, list_page_name))
        (out / list_page_name(page)).write_text(_page(f"vindex report: {index.uri}", "\n".join(body)), encoding="utf-8")

    failed_pages = math.ceil(len(failed) / videos_per_page)
    for page, start in _chunks(len(failed), videos_per_page):
        items = failed[start : start + videos_per_page]
        body = [
            _nav("", len(failed)),
            f"<h1>Failed videos ({start + 1:,}-{start + len(items):,} of {len(failed):,})</h1>",
            pager(page, failed_pages, failed_page_name),
            _failure_table(items),
            pager(page, failed_pages, failed_page_name),
        ]
        (out / failed_page_name(page)).write_text(_page("vindex report: failed videos", "\n".join(body)), encoding="utf-8")
    return ReportSummary(out, count, pages, failed_pages, thumbnails)


STYLE = """\
:root { --ink: #1d232b; --muted: #5f6b7a; --line: #d9dee5; --bg: #f6f7f9; --ok: #1f7a3f; --bad: #b3261e;
        --cut: #b3261e; --gradual: #d9822b; --kf: #1c5fb8; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 0 16px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #fff; }
a { color: #1c5fb8; text-decoration: none; } a:hover { text-decoration: underline; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
h1 { font-size: 20px; margin: 16px 0 8px; word-break: break-all; } h2 { font-size: 16px; margin: 24px 0 8px; }
h3 { font-size: 14px; margin: 0 0 6px; } h3 small { color: var(--muted); font-weight: normal; }
header.top { display: flex; gap: 16px; align-items: baseline; padding: 10px 0; border-bottom: 1px solid var(--line); }
nav.siblings { display: flex; gap: 16px; margin: 10px 0; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; }
.count { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
.count b { font-size: 16px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; vertical-align: middle; }
thead th { border-bottom: 2px solid var(--line); color: var(--muted); font-weight: 600; }
tbody tr { border-bottom: 1px solid var(--line); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.uri { word-break: break-all; } td.poster { width: 104px; } td.poster img { width: 96px; height: auto; display: block; }
table.runs td, table.runs th { font-size: 12px; white-space: nowrap; }
.status { border-radius: 4px; padding: 1px 6px; font-size: 12px; background: var(--bg); border: 1px solid var(--line); }
.status.ok { color: var(--ok); } .status.failed { color: #fff; background: var(--bad); border-color: var(--bad); }
.status.deleted { color: var(--muted); text-decoration: line-through; }
.error { color: var(--bad); } .warning { color: #8a5a00; }
.pager { margin: 8px 0; display: flex; flex-wrap: wrap; gap: 8px; } .pager .current { font-weight: bold; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 6px 16px; margin: 8px 0;
           grid-auto-flow: row; }
dl.facts div { min-width: 0; } dl.facts dt { color: var(--muted); font-size: 12px; } dl.facts dd { margin: 0; }
.timeline { position: relative; margin: 8px 0 4px; }
.track { position: relative; height: 34px; margin-bottom: 4px; background: var(--bg); border: 1px solid var(--line); }
.track.keyframes { height: 12px; background: transparent; border: none; } .track.scenes { height: 26px; }
.shot, .scene { position: absolute; top: 0; bottom: 0; overflow: hidden; color: var(--ink); font-size: 11px;
                padding: 2px 4px; white-space: nowrap; }
.shot.even { background: #b9d3f0; } .shot.odd { background: #d7e6f7; }
.scene.even { background: #d5ecd4; } .scene.odd { background: #e8f4e7; }
.track .cut { position: absolute; top: -4px; bottom: -4px; width: 3px; margin-left: -1px; background: var(--cut); }
.track .gradual { position: absolute; top: 0; bottom: 0; min-width: 4px; opacity: 0.9;
           background: repeating-linear-gradient(45deg, var(--gradual) 0 4px, #fff 4px 7px); }
.kf-mark { position: absolute; top: 0; width: 2px; height: 12px; margin-left: -1px; background: var(--kf); }
.legend { color: var(--muted); font-size: 12px; display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 14px; height: 12px; margin-left: 8px; }
.swatch-cut { background: var(--cut); width: 3px; } .swatch-kf { background: var(--kf); width: 2px; }
.swatch-gradual { background: repeating-linear-gradient(45deg, var(--gradual) 0 4px, #fff 4px 7px); }
.shot-grid { display: flex; flex-wrap: wrap; gap: 12px; }
.shot-card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; }
.shot-card .span { margin: 0 0 6px; color: var(--muted); font-size: 12px; }
.badge { font-size: 11px; font-weight: normal; padding: 0 5px; border-radius: 3px; color: #fff; background: var(--muted); }
.badge.kind-cut { background: var(--cut); } .badge.kind-gradual { background: var(--gradual); }
.keyframes { display: flex; flex-wrap: wrap; gap: 8px; }
figure.keyframe { margin: 0; } figure.keyframe img { width: 176px; height: auto; display: block; border: 1px solid var(--line); }
figcaption { font-size: 11px; color: var(--muted); }
.no-thumb { width: 176px; height: 99px; background: var(--bg); color: var(--muted); display: grid; place-items: center; }
"""

__all__ = ["ReportSummary", "esc", "file_name", "pager", "timeline", "video_page", "write_report"]
