"""Random resized crops that report their box in frame coordinates.

Re-implements SFC's `RandomResizedCropCoord` (`code/utils/transform_coord.py:
90-152`, torchvision's `RandomResizedCrop.get_params` plus a box) with an
explicit numpy Generator instead of Python's global `random`, so that every
crop is a pure function of its seed. Boxes follow ops/geometry.py.
"""

import math

import numpy as np
from PIL import Image


def random_resized_crop_params(
    rng: np.random.Generator, height: int, width: int,
    scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
  """torchvision's sampling: (i, j, h, w) = top row, left column, size.

  Ten tries of area ~ U(scale) * H * W and log aspect ~ U(log ratio); the
  first that fits wins; otherwise the central crop clipped to `ratio`.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = rng.uniform(*scale) * area
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      i = int(rng.integers(0, height - h + 1))
      j = int(rng.integers(0, width - w + 1))
      return i, j, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def crop_box(i: int, j: int, h: int, w: int, height: int,
             width: int) -> np.ndarray:
  """float32 [4] (x1, y1, x2, y2) of a crop, see ops/geometry.py."""
  return np.array([j / (width - 1), i / (height - 1),
                   (j + w - 1) / (width - 1), (i + h - 1) / (height - 1)],
                  np.float32)


def random_resized_crop(
    rng: np.random.Generator, frame: np.ndarray, size: int,
    scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
  """Crops and bilinearly resizes like torchvision's PIL `resized_crop`.

  Args:
    rng: source of randomness.
    frame: uint8 [H, W, 3].
    size: output side S.
    scale, ratio: as torchvision's RandomResizedCrop.

  Returns:
    (crop uint8 [S, S, 3], box float32 [4]).
  """
  height, width = frame.shape[:2]
  i, j, h, w = random_resized_crop_params(rng, height, width, scale, ratio)
  # Exactly torchvision's F.resized_crop on a PIL image (resizing with
  # `box=` instead gives slightly different pixels).
  view = resized_crop(Image.fromarray(frame), i, j, h, w, size)
  return view, crop_box(i, j, h, w, height, width)


def resized_crop(image: Image.Image, i: int, j: int, h: int, w: int,
                 size: int) -> np.ndarray:
  """torchvision's PIL `F.resized_crop` of rows [i, i + h), cols [j, j + w).

  Takes a PIL image so that many crops of one image (CRW's patch grid)
  share one conversion; same pixels as `random_resized_crop`'s.

  Returns:
    uint8 [size, size, 3], bilinearly resized.
  """
  return np.asarray(image.crop((j, i, j + w, i + h)).resize(
      (size, size), Image.BILINEAR))
