"""CRW training transform: per-frame crops cut into grids of jittered patches.

What videowalk does to a clip (README command `--frame-aug grid`, default
`--frame-transforms crop`, `code/utils/arguments.py:120-127`):

1. `get_train_transforms` (`code/utils/augs.py:128-139`) wraps one
   torchvision `Compose` in `MapTransform`, whose `__call__` applies it to
   each frame in turn (`augs.py:28-30`). The `RandomResizedCrop(256,
   scale=(0.8, 0.95), ratio=(0.7, 1.3), interpolation=2)` inside
   (`augs.py:110-112`) therefore draws new parameters for every frame: the
   crops of a clip are independent, not shared.
2. `patch_grid` (`augs.py:56-77`): the stride is drawn from [0.5, 0.5],
   i.e. always half the patch (32 for 64-pixel patches, `augs.py:57-58`);
   `skimage.util.view_as_windows(x, (64, 64, 3), step=(32, 32, 3))`
   reshaped to [-1, 64, 64, 3] lists the 7 x 7 windows of a 256 crop
   row-major (y outer, x inner, `augs.py:71-72`); each window then gets its
   own `RandomResizedCrop(64, scale=(0.7, 0.9))` (`augs.py:60-63,74`) with
   torchvision's default ratio (3/4, 4/3) and bilinear interpolation, drawn
   anew per patch and per frame.
3. ToTensor + Normalize with CIFAR statistics (`augs.py:10-13,92`) follow;
   here they are left to the model (normalization 'cifar'), so patches stay
   uint8.

Crops are PIL crops + bilinear resizes, as in torchvision (see augment.py).
"""

import numpy as np
from PIL import Image

from corrjax.data import augment


def grid_origins(size: int, patch_size: int, stride: int) -> np.ndarray:
  """int [N, 2] (y, x) top-left corners of the windows, row-major.

  Like `view_as_windows`: corners 0, stride, ... while the window fits, so
  N = ((size - patch_size) // stride + 1) ** 2.
  """
  if not 0 < patch_size <= size or stride < 1:
    raise ValueError(f"need 0 < patch_size <= crop size and stride >= 1, got "
                     f"patch {patch_size}, crop {size}, stride {stride}.")
  starts = np.arange(0, size - patch_size + 1, stride)
  ys, xs = np.meshgrid(starts, starts, indexing="ij")
  return np.stack([ys.ravel(), xs.ravel()], axis=-1)


def crw_patches(rng: np.random.Generator, clip: np.ndarray, *,
                crop_size: int, crop_scale: tuple[float, float],
                crop_ratio: tuple[float, float], patch_size: int,
                patch_stride: int, patch_scale: tuple[float, float],
                patch_ratio: tuple[float, float]) -> np.ndarray:
  """One clip -> CRW's graph nodes: jittered patches of per-frame crops.

  Args:
    rng: source of all random draws (frame crops, then patch jitters, frame
      by frame).
    clip: uint8 [T, H, W, 3] frames (H and W may differ between frames).
    crop_size: S, side of each frame's random resized crop (256).
    crop_scale, crop_ratio: its torchvision area and aspect ranges.
    patch_size: P, side of the grid windows and of the output patches (64).
    patch_stride: window stride in crop pixels (32).
    patch_scale, patch_ratio: the per-patch RandomResizedCrop ranges.

  Returns:
    uint8 [T, N, P, P, 3], N = ((S - P) // stride + 1)^2; patch n of frame t
    comes from the window at `grid_origins(S, P, stride)[n]` of crop t.
  """
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
    raise ValueError(f"clip must be uint8 [T, H, W, 3], got {clip.dtype} "
                     f"{clip.shape}.")
  origins = grid_origins(crop_size, patch_size, patch_stride)
  out = np.empty((len(clip), len(origins), patch_size, patch_size, 3),
                 np.uint8)
  for t, frame in enumerate(clip):
    crop, _ = augment.random_resized_crop(rng, frame, crop_size, crop_scale,
                                          crop_ratio)
    image = Image.fromarray(crop)
    for n, (y, x) in enumerate(origins):
      # A RandomResizedCrop of the window = that box, offset, in the crop.
      i, j, h, w = augment.random_resized_crop_params(
          rng, patch_size, patch_size, patch_scale, patch_ratio)
      out[t, n] = augment.resized_crop(image, y + i, x + j, h, w, patch_size)
  return out
