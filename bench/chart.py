"""The benchmark figures as one PNG (Pillow, already a dependency): four bar panels with their values printed.

Drawn by `python bench/run.py --chart` from the reports of that run; a panel whose benchmark did not run is
left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

import rig

PANEL_W, PANEL_H = 640, 400
MARGIN = 60
OURS, FLOOR, LEGACY, FLOOR_LEGACY = "#e4572e", "#4c78a8", "#f2a541", "#9ecae9"
INK, GRID = "#222222", "#dddddd"

Series = dict[str, tuple[str, list[float]]]
"""Name -> (colour, one value per group)."""


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def panel(title: str, unit: str, groups: list[str], series: Series) -> Image.Image:
    """Grouped bars: one group per label, one bar per series, each with its value on top."""
    image = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    draw.text((PANEL_W // 2, 22), title, fill=INK, font=_font(18), anchor="mm")
    left, right, top, bottom = MARGIN, PANEL_W - 20, 90, PANEL_H - 60
    draw.line((left, bottom, right, bottom), fill=INK)
    draw.text((12, (top + bottom) // 2), unit, fill=INK, font=_font(13), anchor="lm")
    peak = max((v for _, values in series.values() for v in values), default=1.0) or 1.0
    group_w = (right - left) / max(len(groups), 1)
    bar_w = min(60.0, group_w * 0.8 / max(len(series), 1))
    for g, label in enumerate(groups):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, (color, values) in enumerate(series.values()):
            value = values[g]
            height = (bottom - top) * value / peak
            x = x0 + s * bar_w
            draw.rectangle((x + 2, bottom - height, x + bar_w - 2, bottom), fill=color)
            shown = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            draw.text((x + bar_w / 2, bottom - height - 4), shown, fill=INK, font=_font(12), anchor="md")
        draw.text((left + (g + 0.5) * group_w, bottom + 8), label, fill=INK, font=_font(13), anchor="ma")
    if len(series) > 1:
        x = left + 10
        for name, (color, _) in series.items():
            draw.rectangle((x, 44, x + 12, 56), fill=color)
            draw.text((x + 18, 50), name, fill=INK, font=_font(13), anchor="lm")
            x += 30 + int(draw.textlength(name, font=_font(13)))
    return image


def _cold_start(report: rig.Report) -> Image.Image:
    bare, ours = (row["median ms"] for row in report.rows)
    return panel(
        "Cold start: spawn to first tools/list (stdio, median)",
        "ms",
        [""],
        {"bare MCPServer (1 tool)": (FLOOR, [bare]), "fal-mcp (9 tools)": (OURS, [ours])},
    )


def _overhead(report: rig.Report) -> Image.Image:
    medians = {row["path"]: row["median ms"] for row in report.rows}
    return panel(
        "get-status latency, one call at a time (median)",
        "ms",
        ["stdio", "HTTP"],
        {
            "httpx direct": (GRID, [medians["httpx direct"]] * 2),
            "bare MCPServer": (FLOOR, [medians["bare MCPServer, stdio"], medians["bare MCPServer, HTTP"]]),
            "fal-mcp": (OURS, [medians["fal-mcp, stdio"], medians["fal-mcp, HTTP"]]),
        },
    )


def _throughput(report: rig.Report) -> Image.Image:
    def per_level(server: str, era: str) -> list[float]:
        return [row["calls/s"] for row in report.rows if row["server"] == server and row["era"] == era]

    levels = sorted({row["clients"] for row in report.rows})
    return panel(
        "Throughput: get-status over HTTP (2026-07-28 and legacy)",
        "calls/s",
        [f"{n} client{'s' if n > 1 else ''}" for n in levels],
        {
            "bare": (FLOOR, per_level("bare MCPServer", "2026-07-28")),
            "fal-mcp": (OURS, per_level("fal-mcp", "2026-07-28")),
            "bare, legacy session": (FLOOR_LEGACY, per_level("bare MCPServer", "legacy session")),
            "fal-mcp, legacy session": (LEGACY, per_level("fal-mcp", "legacy session")),
        },
    )


def _memory(report: rig.Report) -> Image.Image:
    rows = [row for row in report.rows if row["after"] in ("start", "warm-up") or row is report.rows[-1]]
    return panel(
        "RSS over many calls, HTTP (fal-mcp: mixed)",
        "MB",
        [
            f"{row['after']}".replace(",000", "k") + ("" if row["after"] == "start" else f" ({row['calls']:,})")
            for row in rows
        ],
        {
            "bare MCPServer": (FLOOR, [row["bare MCPServer MB"] for row in rows]),
            "fal-mcp": (OURS, [row["fal-mcp MB"] for row in rows]),
        },
    )


def draw(reports: dict[str, rig.Report], path: Path, machine: dict[str, Any]) -> None:
    drawers = {"cold_start": _cold_start, "overhead": _overhead, "throughput": _throughput, "memory": _memory}
    panels = [drawer(reports[name]) for name, drawer in drawers.items() if name in reports]
    if not panels:
        return
    columns = min(2, len(panels))
    rows = (len(panels) + 1) // 2
    footer = 30
    sheet = Image.new("RGB", (PANEL_W * columns, PANEL_H * rows + footer), "white")
    for index, image in enumerate(panels):
        sheet.paste(image, ((index % 2) * PANEL_W, (index // 2) * PANEL_H))
    caption = (
        f"fal-mcp {machine['fal-mcp']}, mcp {machine['mcp']}, Python {machine['python']}, "
        f"{machine['cpus']} cores; fake fal on loopback. python bench/run.py --chart"
    )
    ImageDraw.Draw(sheet).text((10, PANEL_H * rows + 8), caption, fill="#666666", font=_font(13))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
