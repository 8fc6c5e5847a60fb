"""Palette PNGs in the DAVIS results layout and mask overlay pictures."""

import os

import numpy as np
from PIL import Image


def davis_palette() -> np.ndarray:
  """uint8 [256, 3]: the PASCAL VOC / DAVIS colour map (id 1 = red)."""
  palette = np.zeros((256, 3), np.uint8)
  for i in range(256):
    c, r, g, b = i, 0, 0, 0
    for bit in range(8):
      r |= ((c >> 0) & 1) << (7 - bit)
      g |= ((c >> 1) & 1) << (7 - bit)
      b |= ((c >> 2) & 1) << (7 - bit)
      c >>= 3
    palette[i] = (r, g, b)
  return palette


def save_label_png(path: str, ids: np.ndarray) -> None:
  """Writes int [H, W] ids in [0, 255] as an indexed (palette) PNG."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(ids.astype(np.uint8), mode="P")
  image.putpalette(davis_palette().ravel().tolist())
  image.save(path)


def overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5
            ) -> np.ndarray:
  """uint8 [H, W, 3] frame with objects (ids > 0) tinted in palette colours."""
  colours = davis_palette()[ids].astype(np.float32)
  out = frame.astype(np.float32)
  fg = (ids > 0)[..., None]
  out = np.where(fg, (1 - alpha) * out + alpha * colours, out)
  return out.round().astype(np.uint8)


def save_overlay_strip(path: str, frames: np.ndarray, ids: np.ndarray,
                       indices) -> None:
  """One PNG: frames[i] with ids[i] overlaid, for i in `indices`, in a row.

  Args:
    path: output file.
    frames: uint8 [T, H, W, 3].
    ids: int [T, H, W] label maps (ground truth for frame 0, predictions
      after).
    indices: frame indices to show.
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tiles = [overlay(frames[i], ids[i]) for i in indices]
  gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
  row = [t for tile in tiles for t in (tile, gap)][:-1]
  image = Image.fromarray(np.concatenate(row, axis=1))
  scale = max(1, 256 // frames.shape[1])  # Small videos: enlarge to see.
  if scale > 1:
    image = image.resize((image.width * scale, image.height * scale),
                         Image.NEAREST)
  image.save(path)
