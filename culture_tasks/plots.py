"""Every figure of the project: leaderboard plots, the steering matrix, the aligner's loss curve.

Figures must read in grey-scale and for colour-blind readers: colours come from cividis (a
colour-blind-safe map whose lightness rises monotonically), and each series also differs by
marker, line style or hatch; heatmap cells carry their values and intervals as text.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from culture_tasks.atomic import replacing

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)))
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
VSM13_DIMS = ("pdi", "idv", "mas", "uai", "lto", "ivr")


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed). A leaderboard draws all its
    figures (one per survey task) before writing and closing them: no warning past 20 open."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["figure.max_open_warning"] = 0
    import matplotlib.pyplot as plt

    return plt


def colours(n: int) -> list:
    """``n`` cividis colours from dark to light (distinct in grey-scale too)."""
    cmap = pyplot().get_cmap("cividis")
    return [cmap(x) for x in np.linspace(0.0, 0.85, max(n, 1))][:n]


def save(fig, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` atomically (format from the suffix) and close it."""
    try:
        with replacing(Path(path)) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)


def to_svg(fig, name: str = "") -> str:
    """The figure as an inline ``<svg>`` element (text kept as text, so it stays small and sharp).

    Element ids are salted with ``name`` (unique per page): matplotlib's default salt is random, so the
    same input gave another page, and a shared fixed salt would repeat ids across the page's figures."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"culture-align-kit {name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # no creation date: same input, same page
    return text[text.index("<svg"):]


def annotate(ax, values: np.ndarray, fmt: str = "{:.2f}", intervals: np.ndarray | None = None,
             marks: Sequence[Sequence[str]] | None = None,
             reasons: Sequence[Sequence[str]] | None = None) -> list[str]:
    """Write each cell's value on a heatmap, white on dark cells and black on light ones; with
    ``intervals`` (rows x columns x 2, NaN where unknown) the value's interval under it, or "no interval";
    ``marks`` (rows x columns of text) follow the value (‡ for a mean over fewer tasks). ``reasons`` (rows x
    columns of text, "" for none): why a cell has no interval, numbered on the cell; returns the distinct
    reasons in their numbers' order, for a note under the figure."""
    notes: list[str] = []
    image = ax.images[-1]
    for (i, j), v in np.ndenumerate(values):
        if not math.isfinite(v):
            ax.text(j, i, "–", ha="center", va="center", fontsize=8)
            continue
        r, g, b, _ = image.cmap(image.norm(v))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        text = fmt.format(v) + (marks[i][j] if marks is not None else "")
        if intervals is not None:
            low, high = (float(x) for x in intervals[i][j])
            if math.isfinite(low) and math.isfinite(high):
                text += f"\n[{fmt.format(low)}, {fmt.format(high)}]"
            else:
                why = reasons[i][j] if reasons is not None else ""
                if why and why not in notes:
                    notes.append(why)
                text += "\nno interval" + (f" ({notes.index(why) + 1})" if why else "")
        ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black", fontsize=8)
    return notes


def footnotes(fig, notes: Sequence[str]) -> None:
    """The numbered reasons of ``annotate`` under the figure (the saved image's tight box takes them in)."""
    if notes:
        lines = [textwrap.fill(f"({k}) {note}", 120, subsequent_indent="     ") for k, note in enumerate(notes, 1)]
        fig.text(0.01, -0.01, "\n".join(lines), ha="left", va="top", fontsize=7)


def _intervals(cis, shape: tuple[int, int]) -> np.ndarray | None:
    """``[[[low, high], ...], ...]`` (None for an unknown bound) as a rows x columns x 2 array; None without."""
    if cis is None:
        return None
    out = np.array([[[np.nan if x is None else float(x) for x in (ci or (None, None))] for ci in row] for row in cis],
                   dtype=float)
    return out.reshape(*shape, 2)


# --------------------------------------------------------------------------- leaderboard


def vsm13_radar(title: str, profiles: Sequence[tuple[str, Mapping[str, float]]],
                target: tuple[str, Mapping[str, float]] | None,
                intervals: Sequence[Mapping[str, tuple[float, float]]] | None = None):
    """The six VSM13 indices of each profile on one radar, the target country drawn thick and dashed;
    ``intervals`` (one mapping per profile: dimension -> 95 % interval) shaded around each profile's line,
    so that two profiles are not read as different where their bands overlap; a profile with none is
    labelled "(no interval)".

    Indices can fall outside 0-100, so the radial axis spans the values shown.
    """
    plt = pyplot()
    angles = np.linspace(0, 2 * np.pi, len(VSM13_DIMS), endpoint=False)
    closed = [*angles, angles[0]]
    fig, ax = plt.subplots(figsize=(5.2, 4.6), subplot_kw={"polar": True})
    series = list(profiles) + ([target] if target else [])
    bands = list(intervals or [{}] * len(profiles))
    shown = [v for _, p in series for d in VSM13_DIMS if math.isfinite(v := float(p.get(d, math.nan)))]
    shown += [v for band in bands for pair in band.values() for v in pair if math.isfinite(v)]
    low = min([0.0, *shown])
    high = max([100.0, *shown])
    for k, ((label, profile), band, colour) in enumerate(zip(profiles, bands, colours(len(profiles)))):
        values = [float(profile.get(d, math.nan)) for d in VSM13_DIMS]
        lows, highs = ([float(band.get(d, (math.nan, math.nan))[i]) for d in VSM13_DIMS] for i in (0, 1))
        banded = any(math.isfinite(v) for v in lows + highs)
        ax.plot(closed, [*values, values[0]], color=colour, marker=MARKERS[k % len(MARKERS)],
                linestyle=LINESTYLES[k % len(LINESTYLES)], linewidth=1.5,
                label=label if banded else f"{label} (no interval)")  # not a profile known exactly
        if banded:
            ax.fill_between(closed, [*lows, lows[0]], [*highs, highs[0]], color=colour, alpha=0.15, linewidth=0)
    if target:
        label, profile = target
        dims = [d for d in VSM13_DIMS if d in profile]
        values = [float(profile[d]) if d in profile else math.nan for d in VSM13_DIMS]
        ax.plot([*angles, angles[0]], [*values, values[0]], color="black", linestyle="--", linewidth=2.5,
                marker="o", markerfacecolor="white", label=label + ("" if len(dims) == 6 else f" ({len(dims)} dims)"))
    ax.set_xticks(angles, [d.upper() for d in VSM13_DIMS])
    ax.set_ylim(low - 0.05 * (high - low), high)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=7, frameon=False)
    if any(bands):
        fig.text(0.01, 0.01, "shaded: 95 % interval of each index", fontsize=7)
    fig.tight_layout()
    return fig


def score_heatmap(title: str, rows: Sequence[str], columns: Sequence[str], values: np.ndarray, *,
                  xlabel: str = "", colourbar: str = "", intervals: np.ndarray | None = None,
                  marks: Sequence[Sequence[str]] | None = None, reasons: Sequence[Sequence[str]] | None = None):
    """Rows x columns of scores (higher is better), each cell annotated with its value (and, with
    ``intervals``, its interval; ``marks`` after the value; ``reasons`` why an interval is missing, noted
    under the figure: ``annotate``)."""
    plt = pyplot()
    values = np.asarray(values, dtype=float)
    height = 0.5 if intervals is None else 0.7
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.9 * len(columns)), max(2.4, 1.4 + height * len(rows))))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="cividis", aspect="auto", vmin=0.0,
                      vmax=max(1e-9, float(np.nanmax(values))) if np.isfinite(values).any() else 1.0)
    fig.colorbar(image, ax=ax, label=colourbar)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    notes = annotate(ax, values, intervals=intervals, marks=marks, reasons=reasons)
    fig.tight_layout()
    footnotes(fig, notes)
    return fig


def interval_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[tuple]]], *,
                  ylabel: str = ""):
    """Grouped bars, one group per category and one bar per series, with 95 % interval whiskers.

    ``series`` holds ``(label, [(value, low, high), ...])``; a missing value leaves a gap, a
    missing interval leaves the bar without whiskers and "no interval" on it. The whiskers are
    drawn from low to high as given, so an interval that does not contain its value (a percentile
    bootstrap of a biased statistic, or float noise of a degenerate one) is shown as it is.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(categories) * max(1, len(series)) ** 0.5, 3.4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    handles = []
    for k, ((label, points), colour) in enumerate(zip(series, colours(len(series)))):
        values = np.array([p[0] if p[0] is not None else np.nan for p in points], dtype=float)
        low = np.array([p[1] if p[1] is not None else np.nan for p in points], dtype=float)
        high = np.array([p[2] if p[2] is not None else np.nan for p in points], dtype=float)
        centre = x + (k - (len(series) - 1) / 2) * width
        known = np.isfinite(values)  # a missing value is no bar: a bar of height 0 would read as a score of 0
        style = dict(facecolor=colour, edgecolor="black", linewidth=0.6, hatch=HATCHES[k % len(HATCHES)])
        ax.bar(centre[known], values[known], width, **style)
        handles.append(Patch(label=label, **style))  # the legend entry, also for a series with no value
        shown = np.isfinite(values) & np.isfinite(low) & np.isfinite(high)
        if shown.any():  # whiskers from low to high (matplotlib's yerr refuses a value outside its interval)
            ax.vlines(centre[shown], low[shown], high[shown], color="black", linewidth=1.0)
            ax.hlines([*low[shown], *high[shown]], [*(centre[shown] - width / 8)] * 2,
                      [*(centre[shown] + width / 8)] * 2, color="black", linewidth=1.0)
        for c, v in zip(centre[known & ~shown], values[known & ~shown]):  # not a value known exactly
            ax.text(c, v, "no\ninterval", ha="center", va="bottom", fontsize=6)
            ax.margins(y=0.15)  # room for the note under the title
    ax.set_xticks(x, categories, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- steering and aligner


def steering_heatmap(result: dict, path: Path, heading: str | None = None, names: dict[str, str] | None = None) -> None:
    """The steering matrix: each steered profile (row) against each country (column). ``heading`` and ``names`` (a
    row's label -> its name in the figure): what answered, said in the image itself (``steering.heatmap_names``)."""
    plt = pyplot()
    names = names or {}
    panels = [("vsm13", "distance", "plain_distance", "VSM13 z-distance (lower = closer)", "cividis_r")]
    if result.get("wvs"):
        panels.append(("wvs", "similarity", "plain_similarity", "WVS 1 - JSD (higher = closer)", "cividis"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 1.5 + 0.8 * len(result["vsm13"]["rows"])),
                             squeeze=False)
    for ax, (part, key, plain_key, title, cmap) in zip(axes[0], panels):
        block = result[part]
        values = np.asarray([*block[key], block[plain_key]], dtype=float)
        cis = None  # each cell's interval (a result stored before the intervals existed has none)
        if block.get(f"{key}_ci") is not None and block.get(f"{plain_key}_ci") is not None:
            cis = _intervals([*block[f"{key}_ci"], block[f"{plain_key}_ci"]], values.shape)
        columns = block["columns"]
        if part == "vsm13":  # a column over fewer dimensions is on another scale: say so under it
            columns = [f"{c} ({len(d)} dims)" for c, d in zip(columns, block["column_dims"])]
        image = ax.imshow(values, cmap=cmap, aspect="auto")
        fig.colorbar(image, ax=ax)
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
        ax.set_yticks(range(len(block["rows"]) + 1), [*(names.get(r, r) for r in block["rows"]), "plain model"])
        ax.set_xlabel("compared with")
        ax.set_ylabel("steered to")
        level = (result.get("config") or {}).get("level", 0.95)
        ax.set_title(title + ("" if cis is None else f", {level * 100:g} % intervals"))
        annotate(ax, values, intervals=cis)
    if heading:
        fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    save(fig, path)


def loss_curve(history: list[dict], path: Path, title: str, ylabel: str) -> None:
    """The aligner's best-so-far and population-mean loss per generation; ``ylabel`` says what the loss is."""
    plt = pyplot()
    gens = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    dark, light = colours(2)
    ax.plot(gens, [h["best_so_far"] for h in history], color=dark, linestyle="-", marker="o", markersize=3,
            label="best so far")
    means = [np.nan if h["mean"] is None else h["mean"] for h in history]  # None: no finite loss in that generation
    ax.plot(gens, means, color=light, linestyle="--", marker="s", markersize=3, label="population mean")
    ax.set_xlabel("generation")
    ax.set_ylabel(textwrap.fill(ylabel, 40))  # a label longer than the axis would squeeze the plot
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save(fig, path)
