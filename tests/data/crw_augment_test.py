"""Tests for corrjax.data.crw_augment (CRW's per-frame crop + patch grid)."""

import numpy as np
import pytest

from corrjax.data import augment
from corrjax.data import crw_augment

_NO_JITTER = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                  patch_scale=(1.0, 1.0), patch_ratio=(1.0, 1.0))
_JITTER = dict(crop_scale=(0.8, 0.95), crop_ratio=(0.7, 1.3),
               patch_scale=(0.7, 0.9), patch_ratio=(3 / 4, 4 / 3))


def _coordinate_clip(num_frames=3, size=32):
  """uint8 [T, S, S, 3]: red = 8 * row, green = 8 * column, blue = frame."""
  y, x = np.mgrid[:size, :size]
  return np.stack([np.stack([8 * y, 8 * x, np.full_like(y, t)], -1)
                   for t in range(num_frames)]).astype(np.uint8)


def test_grid_origins_are_row_major_like_view_as_windows():
  origins = crw_augment.grid_origins(256, 64, 32)
  assert origins.shape == (49, 2)
  np.testing.assert_array_equal(origins[:8], [[0, 0], [0, 32], [0, 64],
                                              [0, 96], [0, 128], [0, 160],
                                              [0, 192], [32, 0]])
  np.testing.assert_array_equal(origins[-1], [192, 192])
  # (S - P) not a multiple of the stride: windows stop where they fit.
  np.testing.assert_array_equal(
      crw_augment.grid_origins(10, 4, 3)[:, 1], [0, 3, 6] * 3)
  with pytest.raises(ValueError, match="patch_size"):
    crw_augment.grid_origins(32, 48, 16)


def test_without_jitter_patches_are_the_exact_windows():
  clip = _coordinate_clip()
  patches = crw_augment.crw_patches(
      np.random.default_rng(0), clip, crop_size=32, patch_size=16,
      patch_stride=8, **_NO_JITTER)
  assert patches.shape == (3, 9, 16, 16, 3) and patches.dtype == np.uint8
  for t in range(3):
    for n in range(9):
      y, x = divmod(n, 3)  # Row-major: y outer, x inner.
      np.testing.assert_array_equal(
          patches[t, n], clip[t, 8 * y:8 * y + 16, 8 * x:8 * x + 16])


def test_equals_per_window_random_resized_crops_in_reference_order():
  # videowalk: per frame one RandomResizedCrop, then one per window
  # (augs.py:29,74); the same draws from one generator must give the same
  # pixels as cropping every window array separately.
  clip = np.random.default_rng(1).integers(0, 256, (2, 40, 56, 3), np.uint8)
  patches = crw_augment.crw_patches(
      np.random.default_rng(7), clip, crop_size=32, patch_size=16,
      patch_stride=8, **_JITTER)
  rng = np.random.default_rng(7)
  for t in range(2):
    crop, _ = augment.random_resized_crop(rng, clip[t], 32, (0.8, 0.95),
                                          (0.7, 1.3))
    for n, (y, x) in enumerate(crw_augment.grid_origins(32, 16, 8)):
      expected, _ = augment.random_resized_crop(
          rng, crop[y:y + 16, x:x + 16], 16, (0.7, 0.9), (3 / 4, 4 / 3))
      np.testing.assert_array_equal(patches[t, n], expected)


def test_frames_and_patches_are_cropped_independently():
  frame = np.random.default_rng(2).integers(0, 256, (48, 48, 3), np.uint8)
  clip = np.stack([frame] * 4)  # Identical frames.
  patches = crw_augment.crw_patches(
      np.random.default_rng(3), clip, crop_size=32, patch_size=16,
      patch_stride=8, **_JITTER)
  # Independent per-frame crops (MapTransform) make equal frames differ.
  assert all(not np.array_equal(patches[0], patches[t]) for t in (1, 2, 3))
  # Per-patch jitter: windows of an 8-periodic frame at stride 8 are all
  # equal, yet each patch draws its own crop.
  tile = np.random.default_rng(4).integers(0, 256, (8, 8, 3), np.uint8)
  periodic = np.tile(tile, (4, 4, 1))[None]
  frame_only = dict(_JITTER, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
  jittered = crw_augment.crw_patches(
      np.random.default_rng(5), periodic, crop_size=32, patch_size=16,
      patch_stride=8, **frame_only)[0]
  exact = crw_augment.crw_patches(
      np.random.default_rng(5), periodic, crop_size=32, patch_size=16,
      patch_stride=8, **_NO_JITTER)[0]
  assert all(np.array_equal(exact[0], p) for p in exact[1:])
  distinct = {p.tobytes() for p in jittered}
  assert len(distinct) >= 7  # 9 patches; equal draws are unlikely.


def test_bad_clip_is_a_clear_error():
  with pytest.raises(ValueError, match="uint8"):
    crw_augment.crw_patches(
        np.random.default_rng(0), np.zeros((2, 8, 8, 3), np.float32),
        crop_size=8, patch_size=4, patch_stride=2, **_NO_JITTER)
