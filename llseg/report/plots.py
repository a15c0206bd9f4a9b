"""Report figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state).

Scores come in as fractions (0..1, ``None`` = undefined) and are shown in percent.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

Matrix = Sequence[Sequence[float | None]]
RGB = tuple[int, int, int]
PANEL_INCHES = 2.6  # width of one image panel
DPI = 100


def _rgb(colour: RGB) -> tuple[float, float, float]:
    return colour[0] / 255, colour[1] / 255, colour[2] / 255


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def percent_matrix(values: Matrix) -> np.ndarray:
    """Rows padded to one length, in percent, NaN for ``None`` and missing entries."""
    if not values or not any(len(row) for row in values):
        raise ValueError("the results matrix is empty")
    width = max(len(row) for row in values)
    out = np.full((len(values), width), np.nan)
    for i, row in enumerate(values):
        out[i, : len(row)] = [np.nan if v is None else 100.0 * v for v in row]
    return out


def matrix_heatmap(values: Matrix) -> Figure:
    """R as an annotated heatmap: rows = after round 1..R, columns = eval set 1..R, values in %."""
    data = percent_matrix(values)
    rows, cols = data.shape
    fig = _figure(2.2 + 1.0 * cols, 1.2 + 0.6 * rows)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            value = data[i, j]
            text = "–" if np.isnan(value) else f"{value:.1f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if not value >= 60 else "black")
    ax.set_xticks(range(cols), [f"eval set {j}" for j in range(1, cols + 1)])
    ax.set_yticks(range(rows), [f"after round {i}" for i in range(1, rows + 1)])
    ax.set_title("Results matrix R (mIoU %)")
    fig.colorbar(image, ax=ax, label="mIoU (%)")
    return fig


def step_curves(values: Matrix) -> Figure:
    """mIoU per step: one curve per eval set, the mean over the eval sets seen so far and over all."""
    data = percent_matrix(values)
    rows, cols = data.shape
    steps = np.arange(1, rows + 1)
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for j in range(cols):
        ax.plot(steps, data[:, j], marker="o", label=f"eval set {j + 1}")
    with np.errstate(invalid="ignore"):
        seen = [np.nanmean(data[i, : i + 1]) if np.isfinite(data[i, : i + 1]).any() else np.nan for i in range(rows)]
        every = [np.nanmean(row) if np.isfinite(row).any() else np.nan for row in data]
    ax.plot(steps, seen, "k--", marker="s", label="mean of eval sets 1..i (seen)")
    ax.plot(steps, every, ":", color="grey", marker="^", label="mean of all eval sets")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("after round")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("mIoU per step")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return fig


def class_iou_bars(ious: dict[str, float | None], colours: Sequence[RGB]) -> Figure:
    """IoU per class as bars in the class's palette colour; ``n/a`` for classes never labelled nor predicted."""
    if len(colours) != len(ious):
        raise ValueError(f"{len(ious)} classes but {len(colours)} colours")
    names = list(ious)
    values = np.array([np.nan if v is None else 100.0 * v for v in ious.values()])
    fig = _figure(max(6.0, 1.5 + 0.45 * len(names)), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(values), color=[_rgb(rgb) for rgb in colours], edgecolor="black", linewidth=0.6)
    for k, value in enumerate(values):
        ax.text(k, (0 if np.isnan(value) else value) + 1.5, "n/a" if np.isnan(value) else f"{value:.0f}",
                ha="center", va="bottom", fontsize="small")
    if np.isfinite(values).any():
        mean = float(np.nanmean(values))
        ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean over classes with a value: {mean:.1f}")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 112)
    ax.set_ylabel("IoU (%)")
    ax.set_title("IoU per class on the test set after the last step")
    return fig


def image_grid(
    panels: Sequence[Sequence[np.ndarray | None]],
    column_titles: Sequence[str],
    row_titles: Sequence[str],
    legend: Sequence[tuple[str, RGB]],
) -> Figure:
    """RGB panels in rows (one per image, titled below its first panel) and columns; ``None`` = missing."""
    shapes = [p.shape for row in panels for p in row if p is not None]
    if not shapes:
        raise ValueError("no image to show")
    height, width = shapes[0][:2]
    cols = max(len(row) for row in panels)
    panel_h = PANEL_INCHES * height / width
    legend_rows = -(-len(legend) // 6)
    fig = _figure(PANEL_INCHES * cols + 0.2, (panel_h + 0.35) * len(panels) + 0.3 * legend_rows + 0.3)
    axes = fig.subplots(len(panels), cols, squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            panel = row[j] if j < len(row) else None
            if panel is None:
                ax.imshow(np.full((height, width, 3), 235, np.uint8))
                ax.text(width / 2, height / 2, "missing", ha="center", va="center", color="grey")
            else:
                ax.imshow(panel, interpolation="nearest")
            if i == 0:
                ax.set_title(column_titles[j], fontsize="medium")
        axes[i][0].set_xlabel(row_titles[i], fontsize="small")
    if legend:
        handles = [Patch(facecolor=_rgb(rgb), edgecolor="black", label=name) for name, rgb in legend]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize="small")
    return fig
