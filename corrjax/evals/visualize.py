"""Palette PNGs in the DAVIS results layout and mask overlay pictures."""

import os

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


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


def boundaries(ids: np.ndarray, thickness: int = 2) -> np.ndarray:
  """bool [H, W]: pixels within `thickness` of a change of id."""
  edge = np.zeros(ids.shape, bool)
  for axis in (0, 1):
    diff = np.diff(ids, axis=axis) != 0
    pad = [(0, 0), (0, 0)]
    pad[axis] = (0, 1)
    edge |= np.pad(diff, pad)
    pad[axis] = (1, 0)
    edge |= np.pad(diff, pad)
  for _ in range(thickness - 1):
    grown = edge.copy()
    grown[1:] |= edge[:-1]
    grown[:-1] |= edge[1:]
    grown[:, 1:] |= edge[:, :-1]
    grown[:, :-1] |= edge[:, 1:]
    edge = grown
  return edge


def overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.4
            ) -> np.ndarray:
  """uint8 [H, W, 3]: objects (ids > 0) tinted in palette colours, their
  outlines drawn solid (visible on textured backgrounds too)."""
  palette = davis_palette()
  colours = palette[ids].astype(np.float32)
  out = frame.astype(np.float32)
  fg = (ids > 0)[..., None]
  out = np.where(fg, (1 - alpha) * out + alpha * colours, out)
  edge = boundaries(ids)
  # The outline takes the colour of the object it borders.
  grown = ids.copy()
  for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
    rolled = np.roll(ids, shift, axis)
    grown = np.where(grown == 0, rolled, grown)
  out[edge & (grown > 0)] = palette[grown[edge & (grown > 0)]]
  return out.round().astype(np.uint8)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
  """Writes `text` in the top-left corner on a dark box."""
  image = Image.fromarray(tile)
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  left, top, right, bottom = draw.textbbox((3, 2), text, font=font)
  draw.rectangle((0, 0, right + 3, bottom + 2), fill=(0, 0, 0))
  draw.text((3, 2), text, fill=(255, 255, 255), font=font)
  return np.asarray(image)


def _resize_to_height(image: np.ndarray, height: int, nearest: bool
                      ) -> np.ndarray:
  h, w = image.shape[:2]
  if h == height:
    return image
  width = max(1, round(w * height / h))
  method = Image.NEAREST if nearest else Image.BILINEAR
  return np.asarray(Image.fromarray(image).resize((width, height), method))


def save_overlay_strip(path: str, frames: np.ndarray, ids: np.ndarray,
                       indices, truth: np.ndarray | None = None,
                       panel_height: int = 160) -> None:
  """One small PNG of labelled panels, one column per frame in `indices`.

  Row 1 shows `ids` (frame 0: the ground truth the propagation starts
  from, later frames: predictions); with `truth`, row 2 shows the ground
  truth of the same frames. Each panel says its frame and what it shows.

  Args:
    path: output file.
    frames: uint8 [T, H, W, 3].
    ids: int [T, H, W] label maps (ground truth for frame 0, predictions
      after).
    indices: frame indices to show.
    truth: optional int [T, H, W] ground truth.
    panel_height: pixels per panel (frames are scaled to it; small videos
      are enlarged with nearest neighbours).
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rows = [[(i, ids[i], "GT" if i == 0 else "pred") for i in indices]]
  if truth is not None:
    rows.append([(i, truth[i], "GT") for i in indices])
  nearest = frames.shape[1] < panel_height
  gap = 4
  lines = []
  for row in rows:
    tiles = []
    for i, labels, kind in row:
      picture = overlay(_resize_to_height(frames[i], panel_height, nearest),
                        _resize_to_height(labels.astype(np.uint8),
                                          panel_height, True))
      tiles.append(_label(picture, f"frame {i} {kind}"))
    spacer = np.full((panel_height, gap, 3), 255, np.uint8)
    lines.append(np.concatenate(
        [t for tile in tiles for t in (tile, spacer)][:-1], axis=1))
  spacer = np.full((gap, lines[0].shape[1], 3), 255, np.uint8)
  image = np.concatenate([x for line in lines for x in (line, spacer)][:-1])
  Image.fromarray(image).save(path, optimize=True)
