"""Report figures: what they show is read back from the matplotlib artists, not eyeballed."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from llseg.report import plots

MATRIX: list[list[float | None]] = [[0.5, None, None], [0.25, 0.75, None], [0.125, 0.5, 1.0]]


def test_heatmap_annotates_every_entry_in_percent() -> None:
    fig = plots.matrix_heatmap(MATRIX)
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {
        (0, 0): "50.0", (0, 1): "–", (0, 2): "–",
        (1, 0): "25.0", (1, 1): "75.0", (1, 2): "–",
        (2, 0): "12.5", (2, 1): "50.0", (2, 2): "100.0",
    }
    assert [t.get_text() for t in ax.get_yticklabels()] == ["after round 1", "after round 2", "after round 3"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["eval set 1", "eval set 2", "eval set 3"]
    shown = ax.images[0].get_array()
    assert shown.mask.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    assert shown[2, 2] == 100.0 and ax.images[0].get_clim() == (0, 100)


def test_ragged_matrix_is_padded_and_empty_one_rejected() -> None:
    assert np.isnan(plots.percent_matrix([[0.5], [0.25, 0.5]])[0, 1])
    with pytest.raises(ValueError, match="empty"):
        plots.matrix_heatmap([])


def test_step_curves_plot_columns_and_means() -> None:
    ax = plots.step_curves(MATRIX).axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.lines}
    assert list(lines["eval set 1"]) == [50.0, 25.0, 12.5]
    assert list(lines["eval set 3"])[2] == 100.0 and math.isnan(lines["eval set 3"][0])
    assert lines["mean of eval sets 1..i (seen)"] == pytest.approx([50.0, 50.0, (12.5 + 50 + 100) / 3])
    assert lines["mean of all eval sets"] == pytest.approx([50.0, 50.0, (12.5 + 50 + 100) / 3])
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


def test_class_bars_use_palette_colours_and_mark_undefined_classes() -> None:
    ious = {"road": 0.9, "sky": None, "car": 0.3}
    colours = [(128, 64, 128), (70, 130, 180), (0, 0, 142)]
    ax = plots.class_iou_bars(ious, colours).axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([90.0, 0.0, 30.0])
    assert [tuple(round(255 * c) for c in p.get_facecolor()[:3]) for p in ax.patches] == colours
    assert [t.get_text() for t in ax.texts] == ["90", "n/a", "30"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["road", "sky", "car"]
    assert ax.get_legend().get_texts()[0].get_text() == "mean over classes with a value: 60.0"
    with pytest.raises(ValueError, match="3 classes but 2 colours"):
        plots.class_iou_bars(ious, colours[:2])


def test_image_grid_layout_legend_and_png() -> None:
    red = np.zeros((8, 16, 3), np.uint8)
    red[..., 0] = 255
    fig = plots.image_grid([[red, red, None], [red, None, red]], ["input", "ground truth", "after round 1"],
                           ["a", "b"], [("road", (255, 0, 0))])
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "ground truth", "after round 1"]
    assert [fig.axes[0].get_xlabel(), fig.axes[3].get_xlabel()] == ["a", "b"]
    assert [t.get_text() for t in fig.axes[2].texts] == ["missing"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["road"]
    image = Image.open(io.BytesIO(plots.png(fig)))
    assert image.format == "PNG" and image.size[0] > image.size[1] > 0
    with pytest.raises(ValueError, match="no image"):
        plots.image_grid([[None]], ["input"], ["a"], [])
