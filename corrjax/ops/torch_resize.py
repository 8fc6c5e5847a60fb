"""PyTorch-exact `F.interpolate` (bilinear, bicubic; align_corners=False).

`jax.image.resize` is not PyTorch's resize: its bicubic kernel is Keys with
A = -0.5 (PyTorch uses A = -0.75) and it antialiases when downsampling
(PyTorch does not, unless asked). LIIR resizes its position embedding with
`F.interpolate(mode='bicubic')` (LIIR_pytorch `models/resnet.py:106`) and its
colour targets with `mode='bilinear'` (`models/colorizer_momen.py:96-97`,
`main_dis.py:236,243`), so these are written out here.

Both are separable: out = M_h x M_w^T per channel, with M [out, in] built in
float64 numpy from PyTorch's index arithmetic (ATen `UpSample.h`,
`area_pixel_compute_source_index`, `upsample_bicubic2d`):
  src = (in / out) * (dst + 0.5) - 0.5;
  bilinear: src clamped at 0, taps floor(src) and min(floor(src) + 1, in - 1);
  bicubic: src not clamped, taps floor(src) - 1 .. floor(src) + 2 clamped to
  [0, in - 1] (border replication), cubic convolution weights with A = -0.75.
Pixel centres are at integer + 0.5 in the half-pixel convention.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

CUBIC_A = -0.75  # ATen's `upsample_bicubic2d` kernel constant.


def _cubic_weights(t: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
  """ATen `get_cubic_upsample_coefficients`: [..., 4] for taps -1..2."""

  def near(x):  # |x| <= 1.
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2.
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], -1)


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int,
                         method: str) -> np.ndarray:
  """float32 [out_size, in_size]: out = M @ in along one axis.

  Args:
    in_size: input length.
    out_size: output length.
    method: 'bilinear' or 'bicubic' (PyTorch, align_corners=False, no
      antialias, output size given so the scale is in_size / out_size).
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}.")
  # float32 index arithmetic, as ATen's for float inputs.
  scale = np.float32(in_size / out_size)
  src = (scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5))
         - np.float32(0.5)).astype(np.float64)
  m = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  if method == "bilinear":
    src = np.maximum(src, 0.0)
    x0 = np.floor(src).astype(np.int64)
    x1 = np.minimum(x0 + 1, in_size - 1)
    lam = src - x0
    np.add.at(m, (rows, x0), 1 - lam)
    np.add.at(m, (rows, x1), lam)
  elif method == "bicubic":
    x0 = np.floor(src).astype(np.int64)
    weights = _cubic_weights(src - x0)
    for k in range(4):
      np.add.at(m, (rows, np.clip(x0 - 1 + k, 0, in_size - 1)),
                weights[:, k])
  else:
    raise ValueError(f"unknown method {method!r}; expected 'bilinear' or "
                     "'bicubic'.")
  return m.astype(np.float32)


def resize(x: jax.Array, size: tuple[int, int], method: str) -> jax.Array:
  """`F.interpolate(x, size, mode=method)` for NHWC arrays.

  Args:
    x: float [..., H, W, C].
    size: (H_out, W_out).
    method: 'bilinear' or 'bicubic'.

  Returns:
    float [..., H_out, W_out, C]. Same size is the identity.
  """
  h, w = x.shape[-3:-1]
  if (h, w) == tuple(size):
    return x
  mh = jnp.asarray(interpolation_matrix(h, size[0], method))
  mw = jnp.asarray(interpolation_matrix(w, size[1], method))
  return jnp.einsum("ph,...hwc,qw->...pqc", mh, x, mw,
                    precision=jax.lax.Precision.HIGHEST)
