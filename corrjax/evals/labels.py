"""Label maps to and from feature resolution, as the CRW protocol does.

In: one-hot at full resolution, then OpenCV `resize` INTER_LINEAR (videowalk
`code/data/vos.py:225-263`) to (ceil(H / 8), ceil(W / 8)): point samples at
half-pixel centres, no area averaging. Out: the same bilinear resize up to
the frame size, then argmax (`code/utils/test_utils.py:80-117`).
"""

import numpy as np


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray,
                                              np.ndarray]:
  """OpenCV INTER_LINEAR source indices and weights along one axis."""
  scale = src / dst
  pos = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
  lo = np.floor(pos).astype(np.int64)
  frac = pos - lo
  frac = np.where(lo < 0, 0.0, frac)
  lo = np.clip(lo, 0, src - 1)
  at_end = lo >= src - 1
  frac = np.where(at_end, 0.0, frac)
  hi = np.minimum(lo + 1, src - 1)
  return lo, hi, frac


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """OpenCV-style INTER_LINEAR resize of float [H, W, ...] to [h, w, ...]."""
  x = np.asarray(x, np.float32)
  y0, y1, fy = _linear_taps(x.shape[0], height)
  x0, x1, fx = _linear_taps(x.shape[1], width)
  extra = (1,) * (x.ndim - 2)
  fy = fy.reshape((-1, 1) + extra).astype(np.float32)
  fx = fx.reshape((1, -1) + extra).astype(np.float32)
  rows = x[y0] * (1 - fy) + x[y1] * fy
  return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [T, H, W, 3] -> float32 [T, h, w, 3] in [0, 1], resized as the
  reference resizes frames (cv2 INTER_LINEAR on float images, videowalk
  `code/data/vos.py:38-42`)."""
  return np.stack([resize_bilinear(f / np.float32(255.0), height, width)
                   for f in frames])


def resize_nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """OpenCV INTER_NEAREST resize of [H, W, ...]: source floor(i / (d / s)).

  The scale is OpenCV's 1 / (dst / src) in double precision, whose rounding
  decides exact ties (e.g. 854 -> 320 at column 160).
  """
  def taps(src, dst):
    inv = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * inv).astype(np.int64),
                      src - 1)
  return x[taps(x.shape[0], height)][:, taps(x.shape[1], width)]


def one_hot(label_map: np.ndarray, num_classes: int) -> np.ndarray:
  """int [H, W] ids in [0, K) -> float32 [H, W, K]."""
  if label_map.min() < 0 or label_map.max() >= num_classes:
    raise ValueError(f"label ids must lie in [0, {num_classes}), got "
                     f"[{label_map.min()}, {label_map.max()}].")
  return np.eye(num_classes, dtype=np.float32)[label_map]


def feature_grid(height: int, width: int, stride: int = 8) -> tuple[int, int]:
  """Feature map size of a stride-`stride` ResNet: ceil(H / s), ceil(W / s)."""
  return -(-height // stride), -(-width // stride)


def downsample_labels(label_map: np.ndarray, num_classes: int,
                      stride: int = 8) -> np.ndarray:
  """int [H, W] -> float32 [ceil(H/s), ceil(W/s), K] soft one-hot."""
  h, w = feature_grid(*label_map.shape, stride)
  return resize_bilinear(one_hot(label_map, num_classes), h, w)


def upsample_argmax(soft: np.ndarray, height: int, width: int) -> np.ndarray:
  """float [h, w, K] -> int32 [H, W] ids after a bilinear resize."""
  return np.argmax(resize_bilinear(soft, height, width), axis=-1).astype(
      np.int32)


def frames_and_first_mask(video, crop_size: int
                          ) -> tuple[np.ndarray, np.ndarray]:
  """The frames and first mask a propagation protocol works on.

  Args:
    video: an evals.vos.Video (frames uint8 [T, H, W, 3], masks [T, H, W]).
    crop_size: -1 for native resolution; > 0 resizes the frames (bilinear)
      and the first mask (nearest) to a crop_size x crop_size square.

  Raises:
    ValueError: one line when frames and masks differ in size.
  """
  t, height, width = video.masks.shape
  if video.frames.shape[:3] != (t, height, width):
    raise ValueError(f"{video.name}: frames {video.frames.shape[:3]} and "
                     f"masks {video.masks.shape} differ in size.")
  frames, first = video.frames, video.masks[0]
  if crop_size > 0:
    frames = resize_frames(frames, crop_size, crop_size)
    first = resize_nearest(first, crop_size, crop_size)
  return frames, first


def check_feature_grid(name: str, feats: np.ndarray, size: tuple[int, int],
                       stride: int) -> tuple[int, int]:
  """`feature_grid(*size, stride)`, or one-line ValueError when `feats`
  [T, h, w, C] of video `name` are not on it."""
  grid = feature_grid(*size, stride)
  if feats.shape[1:3] != grid:
    raise ValueError(f"{name}: features {feats.shape[1:3]} are not on "
                     f"the stride-{stride} grid {grid} of {size}.")
  return grid


def with_first_mask(video, preds: list[np.ndarray], crop_size: int,
                    resize_back) -> np.ndarray:
  """int32 [T, H, W]: frame 0's ground truth, then `preds` (int [h, w]
  ids of frames 1..; on the crop_size square when crop_size > 0, brought
  back to the frame size H x W by `resize_back(ids, H, W)`)."""
  _, height, width = video.masks.shape
  if crop_size > 0:
    preds = [resize_back(p, height, width) for p in preds]
  return np.stack([video.masks[0].astype(np.int32)] + list(preds))


def speed_line(name: str, num_frames: int, size: tuple[int, int],
               seconds_features: float, seconds_propagation: float,
               stage: str = "propagation") -> str:
  """One log line of a video's per-stage speeds in frames/s (propagation
  counts the T - 1 predicted frames)."""
  return (f"    {name}: {num_frames} frames {size[0]}x{size[1]}: features "
          f"{num_frames / max(seconds_features, 1e-9):.1f} frames/s, {stage} "
          f"{(num_frames - 1) / max(seconds_propagation, 1e-9):.1f} frames/s")
