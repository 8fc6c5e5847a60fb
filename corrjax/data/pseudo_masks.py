"""Mask-VOS pseudo masks on disk and as pictures (paper Fig. S1).

Pseudo masks are int label maps [T, H, W] (0 = background or a dropped
cluster, 1..K = kept clusters, from ops.kmeans.pseudo_labels), written one
palette PNG per frame in the DAVIS annotation layout:
`<root>/<video>/<frame:05d>.png` (the released code's `Annotations_pseudo`,
reference/liir_maskvos.md §2.1). The picture grid shows, for chosen frames,
a row of frames, a row of all clusters and a row of the kept pseudo masks
over the frames, like the paper's Fig. S1.
"""

import os

import numpy as np
from PIL import Image

from corrjax.evals import visualize


def _upsample(ids: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest upsampling of int [h, w] to [height, width] (cell centres)."""
  h, w = ids.shape
  rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1)
  cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1)
  return ids[rows.astype(int)][:, cols.astype(int)]


def write_pseudo_masks(root: str, video: str, objects: np.ndarray,
                       size: tuple[int, int] | None = None) -> list[str]:
  """Writes int [T, h, w] pseudo masks as palette PNGs.

  Args:
    root: output folder.
    video: video name (a sub-folder).
    objects: int [T, h, w] ids in [0, 255].
    size: optional (H, W) to upsample to (nearest), e.g. the frame size.

  Returns:
    The written paths, frame order.
  """
  paths = []
  for t, ids in enumerate(np.asarray(objects)):
    if size is not None:
      ids = _upsample(ids, *size)
    path = os.path.join(root, video, f"{t:05d}.png")
    visualize.save_label_png(path, ids)
    paths.append(path)
  return paths


def read_pseudo_masks(root: str, video: str) -> np.ndarray:
  """uint8 [T, H, W] ids of the PNGs written by `write_pseudo_masks`."""
  folder = os.path.join(root, video)
  names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
  return np.stack([np.asarray(Image.open(os.path.join(folder, n)))
                   for n in names])


def cluster_grid(frames: np.ndarray, clusters: np.ndarray,
                 objects: np.ndarray, indices, gap: int = 4) -> np.ndarray:
  """A Fig. S1-style picture: frames / clusters / kept pseudo masks.

  Args:
    frames: uint8 [T, H, W, 3].
    clusters: int [T, h, w] cluster ids in [0, M) (all clusters, coloured
      with palette ids 1..M).
    objects: int [T, h, w] pseudo masks (0 = background or dropped).
    indices: frame indices, one column each.
    gap: white pixels between tiles.

  Returns:
    uint8 [3 H + 2 gap, n W + (n - 1) gap, 3].
  """
  palette = visualize.davis_palette()
  _, height, width, _ = frames.shape
  rows = [[], [], []]
  for i in indices:
    rows[0].append(frames[i])
    rows[1].append(palette[_upsample(np.asarray(clusters[i]) + 1, height,
                                     width)])
    rows[2].append(visualize.overlay(
        frames[i], _upsample(np.asarray(objects[i]), height, width)))
  col_gap = np.full((height, gap, 3), 255, np.uint8)
  lines = [np.concatenate([x for tile in row for x in (tile, col_gap)][:-1],
                          axis=1) for row in rows]
  row_gap = np.full((gap, lines[0].shape[1], 3), 255, np.uint8)
  return np.concatenate([lines[0], row_gap, lines[1], row_gap, lines[2]])


def save_cluster_grid(path: str, frames: np.ndarray, clusters: np.ndarray,
                      objects: np.ndarray, indices) -> None:
  """Writes `cluster_grid(...)` as a PNG at `path`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(cluster_grid(frames, clusters, objects, indices)).save(path)
