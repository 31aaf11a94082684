"""ssd_keras.visualize: padding for keras.visualization, the gallery figure, detection tables."""
from __future__ import annotations

import os

import numpy as np

from ssd_keras.data.records import Record
from ssd_keras.visualize import detection_counts, detections_table, padded_boxes, plot_detections


def _detections():
    return [{"boxes": np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.4, 0.6]], np.float32),
             "scores": np.array([0.3, 0.9], np.float32), "labels": np.array([1, 2], np.int32)},
            {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros((0,), np.float32),
             "labels": np.zeros((0,), np.int32)}]


def test_padded_boxes_pads_with_label_minus_one():
    out = padded_boxes([np.ones((2, 4)), np.zeros((0, 4))], [[1, 2], []], [[0.5, 0.25], []])
    assert out["boxes"].shape == (2, 2, 4) and out["labels"].tolist() == [[1, 2], [-1, -1]]
    assert out["confidences"][0].tolist() == [0.5, 0.25]
    assert padded_boxes([], [])["boxes"].shape == (0, 1, 4)


def test_detections_table_filters_sorts_and_scales():
    table = detections_table(_detections(), ["a", "b"], ["cat", "dog"], min_score=0.5,
                             image_size=(100, 200))
    assert table["class"].tolist() == ["dog"] and table["image"].tolist() == ["a"]
    np.testing.assert_allclose(table[["xmin", "ymin", "xmax", "ymax"]].to_numpy()[0],
                               [40, 20, 80, 60], rtol=1e-6)
    everything = detections_table(_detections(), min_score=0.0)
    assert everything["score"].tolist() == sorted(everything["score"], reverse=True)
    counts = detection_counts(_detections(), min_score=0.5)
    assert counts["detections"].tolist() == [1, 0]


def test_plot_detections_writes_png(tmp_path):
    images = np.full((2, 64, 80, 3), 128.0, np.float32)
    records = [Record(image_path="x.jpg", image_id=i, width=80, height=64,
                      boxes=[[8.0, 8.0, 40.0, 32.0]], labels=[1], difficult=[False],
                      convention="coco") for i in range(2)]
    fig, paths = plot_detections(images, _detections(), records, ["cat", "dog"], min_score=0.2,
                                 out_path=str(tmp_path / "gallery"))
    assert paths == [str(tmp_path / "gallery.png")] and os.path.getsize(paths[0]) > 0
    assert len(fig.axes) == 2


def test_plot_detections_any_image_count_fills_the_grid(tmp_path):
    """2 images in 3 columns, 5 in 3 (a partial last row): blank cells, no IndexError."""
    for n, cols in ((2, 3), (5, 3)):
        images = np.full((n, 48, 48, 3), 90.0, np.float32)
        detections = (_detections() * 3)[:n]
        fig, paths = plot_detections(images, detections, min_score=0.2, cols=cols,
                                     out_path=str(tmp_path / f"g{n}"))
        assert os.path.getsize(paths[0]) > 0
        assert len(fig.axes) == -(-n // cols) * cols
