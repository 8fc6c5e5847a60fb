"""Pseudo-mask PNGs round-trip; the Fig. S1-style picture grid."""

import numpy as np
from PIL import Image

from corrjax.data import pseudo_masks


def test_write_read_round_trip(tmp_path):
  objects = np.random.default_rng(0).integers(0, 4, size=(3, 4, 6))
  paths = pseudo_masks.write_pseudo_masks(str(tmp_path), "vid", objects,
                                          size=(32, 48))
  assert [p.rsplit("/", 1)[1] for p in paths] == [
      "00000.png", "00001.png", "00002.png"]
  assert Image.open(paths[0]).mode == "P"
  back = pseudo_masks.read_pseudo_masks(str(tmp_path), "vid")
  assert back.shape == (3, 32, 48)
  # Each 8 x 8 block holds its cell's id.
  np.testing.assert_array_equal(back[:, ::8, ::8], objects)
  np.testing.assert_array_equal(back[:, 7::8, 7::8], objects)


def test_cluster_grid(tmp_path):
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
  clusters = rng.integers(0, 5, size=(5, 2, 2))
  objects = np.where(clusters < 2, clusters + 1, 0)
  grid = pseudo_masks.cluster_grid(frames, clusters, objects, [0, 2, 4])
  assert grid.shape == (3 * 16 + 2 * 4, 3 * 16 + 2 * 4, 3)
  np.testing.assert_array_equal(grid[:16, :16], frames[0])
  assert (grid[16:20] == 255).all()
  path = tmp_path / "g" / "grid.png"
  pseudo_masks.save_cluster_grid(str(path), frames, clusters, objects,
                                 [0, 2, 4])
  assert Image.open(path).size == (56, 56)
