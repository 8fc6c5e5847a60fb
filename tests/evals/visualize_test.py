"""Palette PNGs and overlays."""

import numpy as np
from PIL import Image

from corrjax.evals import visualize


def test_palette_is_davis():
  palette = visualize.davis_palette()
  assert palette[0].tolist() == [0, 0, 0]
  assert palette[1].tolist() == [128, 0, 0]
  assert palette[2].tolist() == [0, 128, 0]
  assert palette[3].tolist() == [128, 128, 0]


def test_label_png_round_trips_ids(tmp_path):
  ids = np.random.default_rng(0).integers(0, 4, (10, 12))
  path = str(tmp_path / "seq" / "00000.png")
  visualize.save_label_png(path, ids)
  with Image.open(path) as image:
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), ids)


def test_overlay_tints_objects_and_outlines_them(tmp_path):
  frame = np.full((12, 12, 3), 200, np.uint8)
  ids = np.zeros((12, 12), np.int64)
  ids[2:10, 2:10] = 1
  out = visualize.overlay(frame, ids, alpha=0.5)
  assert out[5, 5].tolist() == [164, 100, 100]  # Interior: tinted.
  assert out[2, 5].tolist() == [128, 0, 0]  # Outline: solid colour.
  assert out[11, 11].tolist() == [200, 200, 200]  # Background untouched.


def test_overlay_strip_is_small_and_labelled(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, (3, 480, 854, 3), np.uint8)
  ids = np.zeros((3, 480, 854), np.int64)
  ids[:, 100:300, 200:500] = 1
  path = str(tmp_path / "strip.png")
  visualize.save_overlay_strip(path, frames, ids, [0, 2], truth=ids)
  with Image.open(path) as image:
    # Two rows (prediction, ground truth) of two 160-px-high panels.
    assert image.size == (2 * 285 + 4, 2 * 160 + 4)
    panel = np.asarray(image)[:12, :60]
  assert (panel.min(-1) > 180).any()  # Light label text on a dark box.
  assert (panel.max(-1) < 20).mean() > 0.3
