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


def test_overlay_tints_only_objects(tmp_path):
  frame = np.full((4, 4, 3), 200, np.uint8)
  ids = np.zeros((4, 4), np.int64)
  ids[0, 0] = 1
  out = visualize.overlay(frame, ids, alpha=0.5)
  assert out[0, 0].tolist() == [164, 100, 100]
  np.testing.assert_array_equal(out[1:], frame[1:])
  frames = np.repeat(frame[None], 3, 0)
  path = str(tmp_path / "strip.png")
  visualize.save_overlay_strip(path, frames, np.repeat(ids[None], 3, 0),
                               [0, 2])
  with Image.open(path) as image:
    assert image.size == ((4 + 4 + 4) * 64, 4 * 64)  # Enlarged 64x.
