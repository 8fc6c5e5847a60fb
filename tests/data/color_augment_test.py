"""Colour augmentations vs the formulas of the PIL ops torchvision uses.

Formulas (torchvision `transforms/_functional_pil.py` -> Pillow C code):
  blend(a, b, f) = trunc(a + f * (b - a)) in float32, clipped to [0, 255]
    when f is outside [0, 1] (libImaging/Blend.c);
  luma L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (Convert.c L24);
  brightness: blend(0, x, f); contrast: blend(int(mean(L) + 0.5), x, f);
  saturation: blend(L, x, f);
  hue: PIL's uint8 HSV (Convert.c rgb2hsv_row / hsv2rgb, written out below)
    with h += uint8(int32(f * 255)) mod 256.
BYOL's blur and solarize follow deepmind-research `byol/utils/
augmentations.py:133-151,434-439`.
"""

import numpy as np
import pytest

from corrjax import config_defaults
from corrjax.data import color_augment


def _image(seed=0, h=9, w=11):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  image[0, 0] = (17, 17, 17)  # A gray pixel (zero saturation).
  image[0, 1] = (255, 0, 0)
  return image


def _blend(a, b, f):
  out = a.astype(np.float32) + np.float32(f) * (
      b.astype(np.float32) - a.astype(np.float32))
  return np.clip(out, 0, 255).astype(np.uint8)


def _luma(x):
  x = x.astype(np.int64)
  return ((19595 * x[..., 0] + 38470 * x[..., 1] + 7471 * x[..., 2] + 0x8000)
          >> 16).astype(np.uint8)


def _rgb2hsv(x):
  r, g, b = (x[..., i].astype(np.int64) for i in range(3))
  maxc, minc = np.maximum(r, np.maximum(g, b)), np.minimum(r, np.minimum(g, b))
  with np.errstate(divide="ignore", invalid="ignore"):
    cr = (maxc - minc).astype(np.float32)
    s = cr / maxc.astype(np.float32)
    rc, gc, bc = (((maxc - c).astype(np.float32) / cr) for c in (r, g, b))
    h = np.where(r == maxc, bc - gc,
                 np.where(g == maxc,
                          (2.0 + rc.astype(np.float64) - bc).astype(np.float32),
                          (4.0 + gc.astype(np.float64) - rc).astype(
                              np.float32)))
    h = np.fmod(h.astype(np.float64) / 6.0 + 1.0, 1.0).astype(np.float32)
    uh = np.clip((h.astype(np.float64) * 255.0).astype(np.int64), 0, 255)
    us = np.clip((s.astype(np.float64) * 255.0).astype(np.int64), 0, 255)
  grey = maxc == minc
  return (np.where(grey, 0, uh).astype(np.uint8),
          np.where(grey, 0, us).astype(np.uint8), maxc.astype(np.uint8))


def _hsv2rgb(h, s, v):
  h6 = h.astype(np.float32).astype(np.float64) * 6.0 / 255.0
  i = np.floor(h6).astype(np.int64)
  f = (h6 - i).astype(np.float32)
  fs = (s.astype(np.float32).astype(np.float64) / 255.0).astype(np.float32)
  vf = v.astype(np.float32).astype(np.float64)
  p = np.clip(np.round(vf * (1.0 - fs)), 0, 255).astype(np.uint8)
  q = np.clip(np.round(vf * (1.0 - fs * f.astype(np.float64))), 0,
              255).astype(np.uint8)
  t = np.clip(np.round(vf * (1.0 - fs * (1.0 - f.astype(np.float64)))), 0,
              255).astype(np.uint8)
  table = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v),
           4: (t, p, v), 5: (v, p, q)}
  out = np.zeros(h.shape + (3,), np.uint8)
  for sector, rgb in table.items():
    mask = (i % 6) == sector
    for c in range(3):
      out[..., c] = np.where(mask, rgb[c], out[..., c])
  return np.where((s == 0)[..., None], v[..., None], out)


@pytest.mark.parametrize("factor", [0.0, 0.6, 0.93, 1.0, 1.37, 2.5])
def test_brightness_contrast_saturation_are_pil_blends(factor):
  x = _image()
  np.testing.assert_array_equal(color_augment.adjust_brightness(x, factor),
                                _blend(np.zeros_like(x), x, factor))
  mean = int(np.mean(_luma(x), dtype=np.float64) + 0.5)
  np.testing.assert_array_equal(color_augment.adjust_contrast(x, factor),
                                _blend(np.full_like(x, mean), x, factor))
  gray = np.repeat(_luma(x)[..., None], 3, -1)
  np.testing.assert_array_equal(color_augment.adjust_saturation(x, factor),
                                _blend(gray, x, factor))


def test_grayscale_uses_itu_601_weights_on_three_channels():
  x = _image(1)
  out = color_augment.to_grayscale(x)
  assert out.shape == x.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.repeat(_luma(x)[..., None], 3, -1))
  expected = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
  assert np.max(np.abs(out[..., 0] - expected)) <= 0.51


@pytest.mark.parametrize("factor", [-0.5, -0.1, -0.003, 0.0, 0.05, 0.1, 0.5])
def test_hue_shifts_pil_hsv_hue_modulo_256(factor):
  x = _image(2, 16, 16)
  h, s, v = _rgb2hsv(x)
  shift = np.uint8(np.int64(np.trunc(factor * 255)) % 256)
  expected = _hsv2rgb((h + shift).astype(np.uint8), s, v)
  np.testing.assert_array_equal(color_augment.adjust_hue(x, factor), expected)
  with pytest.raises(ValueError, match="not in"):
    color_augment.adjust_hue(x, 0.6)


def test_color_jitter_draws_torchvision_factors_and_order():
  x = _image(3)
  out = color_augment.color_jitter(np.random.default_rng(7), x, brightness=0.4,
                                   contrast=0.4, saturation=0.2, hue=0.1)
  rng = np.random.default_rng(7)
  order = rng.permutation(4)
  factors = [rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4),
             rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)]
  ops = [color_augment.adjust_brightness, color_augment.adjust_contrast,
         color_augment.adjust_saturation, color_augment.adjust_hue]
  expected = x
  for i in order:
    expected = ops[i](expected, factors[i])
  np.testing.assert_array_equal(out, expected)
  assert not np.array_equal(out, x)
  # Zero strengths draw nothing and change nothing but the order.
  same = color_augment.color_jitter(np.random.default_rng(7), x, brightness=0,
                                    contrast=0, saturation=0, hue=0)
  np.testing.assert_array_equal(same, x)


@pytest.mark.parametrize("sigma,kernel_size", [(0.7, 6.4), (2.0, 22.4)])
def test_byol_gaussian_blur_is_a_zero_padded_gaussian(sigma, kernel_size):
  x = _image(4, 12, 14)
  radius = int(kernel_size / 2)
  taps = np.exp(-np.arange(-radius, radius + 1)**2 / (2 * sigma**2))
  taps /= taps.sum()
  padded = np.pad(x.astype(np.float64), ((radius, radius), (radius, radius),
                                         (0, 0)))
  expected = np.zeros(x.shape)
  for i, ti in enumerate(taps):
    for j, tj in enumerate(taps):
      expected += ti * tj * padded[i:i + x.shape[0], j:j + x.shape[1]]
  out = color_augment.gaussian_blur(x, sigma, kernel_size)
  assert out.dtype == np.uint8
  assert np.max(np.abs(out - np.rint(expected))) <= 1
  assert np.mean(out != np.rint(expected)) < 0.01


def test_solarize_pil_blur_and_flip():
  x = _image(5)
  np.testing.assert_array_equal(color_augment.solarize(x),
                                np.where(x < 128, x, 255 - x))
  np.testing.assert_array_equal(color_augment.hflip(x), x[:, ::-1])
  flat = np.full((8, 8, 3), 77, np.uint8)
  np.testing.assert_array_equal(color_augment.pil_gaussian_blur(flat, 1.5),
                                flat)
  blurred = color_augment.pil_gaussian_blur(x, 2.0).astype(np.float64)
  assert np.std(blurred) < np.std(x.astype(np.float64))


def test_augment_view_probabilities_and_determinism():
  x = _image(6, 16, 16)
  off = config_defaults.view_augmentation(
      jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, flip_prob=0.0)
  np.testing.assert_array_equal(
      color_augment.augment_view(np.random.default_rng(0), x, off), x)
  gray_flip = config_defaults.view_augmentation(
      jitter_prob=0.0, grayscale_prob=1.0, blur_prob=0.0, flip_prob=1.0)
  np.testing.assert_array_equal(
      color_augment.augment_view(np.random.default_rng(0), x, gray_flip),
      color_augment.to_grayscale(x)[:, ::-1])
  moco = config_defaults.view_augmentation()
  a = color_augment.augment_view(np.random.default_rng(3), x, moco)
  b = color_augment.augment_view(np.random.default_rng(3), x, moco)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="uint8"):
    color_augment.adjust_brightness(x.astype(np.float32), 1.0)
