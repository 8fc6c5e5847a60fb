"""LIIR's intra-video colour reconstruction at stride 4 (MAST's objective).

Reference: shasha521/LIIR_pytorch@21c7ba5 `models/colorizer_momen.py`
(`Colorizer.forward` 100-222: correlation 130-133, joint softmax 173-175,
label windows 198-207) and `main_dis.py:215-248` (`compute_lphoto`; the
loss at 236-237).

Conventions. Features are NHWC on a stride-s grid; a window of radius r
holds P x P = (2r + 1)^2 offsets d = (dy, dx), dy, dx in [-r, r], ordered
row-major (dy outer, dx inner): index k = (dy + r) P + (dx + r), as both
spatial-correlation-sampler's [b, P, P, h, w] output reshaped to [b, P*P,
hw] and `F.unfold(kernel P, padding r)`. Cells outside the frame are zero
(the sampler's and unfold's zero padding): their logit is 0 and their label
0, and they stay inside the softmax. Affinities are raw dot products, no
normalisation or temperature.
"""

import jax
import jax.numpy as jnp

from corrjax.ops import torch_resize

# `main_dis.py:236-237,243-244`: SmoothL1 on 20x values.
SCALE = 20.0


def smooth_l1(x: jax.Array, y: jax.Array, beta: float = 1.0) -> jax.Array:
  """`F.smooth_l1_loss(x, y, reduction='mean', beta)`."""
  d = jnp.abs(x - y)
  return jnp.mean(jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))


def _column_windows(x: jax.Array, radius: int) -> jax.Array:
  """float [B, h + 2r, w, P, C]: [b, i, j, dx] = x_padded[b, i, j + dx].

  x padded with r zero cells on every side; 2r + 1 slices. (Windows as a
  conv with one-hot filters, `conv_general_dilated_patches`, would cost
  (P C)^2 multiply-adds per cell.)
  """
  w = x.shape[2]
  p = 2 * radius + 1
  padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  return jnp.stack([padded[:, :, dx:dx + w] for dx in range(p)], axis=3)


def unfold_windows(x: jax.Array, radius: int,
                   pad_value: float | jax.Array = 0.0) -> jax.Array:
  """Every cell's (2r + 1)^2 window: `F.unfold(x, 2r + 1, padding=r)`.

  Args:
    x: float [B, h, w, C].
    radius: r.
    pad_value: value of cells outside the frame (scalar, or [B] per row).

  Returns:
    float [B, h, w, P*P, C]; [b, i, j, k] = x[b, i + dy_k, j + dx_k].
  """
  b, h, w, c = x.shape
  p = 2 * radius + 1
  offset = jnp.reshape(jnp.asarray(pad_value, x.dtype), (-1, 1, 1, 1))
  columns = _column_windows(x - offset, radius)
  windows = jnp.stack([columns[:, dy:dy + h] for dy in range(p)], axis=3)
  return windows.reshape(b, h, w, p * p, c) + offset[..., None]


def local_correlation(query: jax.Array, ref: jax.Array,
                      radius: int) -> jax.Array:
  """spatial-correlation-sampler (kernel 1, patch 2r + 1) as NHWC.

  `colorizer_momen.py:72-77,131` (patch 13) and `:65-70,135` (patch 7);
  semantics out[b, k, i, j] = <in1[b, :, i, j], in2[b, :, i + dy, j + dx]>,
  zero outside (liir_maskvos.md §7). One row offset dy at a time against
  the reference's P column shifts (B (h + 2r) w P C floats).

  Args:
    query: float [B, h, w, C].
    ref: float [B, h, w, C].
    radius: r.

  Returns:
    float [B, h, w, P*P] raw dot products.
  """
  h = query.shape[1]
  p = 2 * radius + 1
  columns = _column_windows(ref, radius)
  rows = [jnp.einsum("bhwc,bhwpc->bhwp", query, columns[:, dy:dy + h],
                     precision=jax.lax.Precision.HIGHEST)
          for dy in range(p)]
  return jnp.concatenate(rows, axis=-1)


def intra_affinity(query: jax.Array, refs: jax.Array,
                   radius: int) -> jax.Array:
  """A4: one softmax over references x window (`:130-133,173-175`).

  Args:
    query: float [B, h, w, C], the target frame's f4.
    refs: float [B, R, h, w, C], the references' f4.
    radius: r (6 in training: a 13 x 13 window).

  Returns:
    float [B, h, w, R, P*P], summing to 1 over the last two axes.
  """
  logits = jnp.stack([local_correlation(query, refs[:, r], radius)
                      for r in range(refs.shape[1])], axis=3)
  b, h, w, n, k = logits.shape
  probs = jax.nn.softmax(logits.reshape(b, h, w, n * k), axis=-1)
  return probs.reshape(b, h, w, n, k)


def subsample_labels(labels: jax.Array, stride: int) -> jax.Array:
  """`Colorizer.prep` (`:88-94`): labels[:, ::stride, ::stride]."""
  return labels[..., ::stride, ::stride, :]


def reconstruct(probs: jax.Array, ref_labels: jax.Array,
                radius: int) -> jax.Array:
  """sum over references x window of A * Y (`:198-207`).

  Args:
    probs: float [B, h, w, R, P*P].
    ref_labels: float [B, R, h, w, C_y], on the affinity's grid.
    radius: r.

  Returns:
    float [B, h, w, C_y].
  """
  windows = jnp.stack([unfold_windows(ref_labels[:, r], radius)
                       for r in range(ref_labels.shape[1])], axis=3)
  return jnp.einsum("bhwrk,bhwrkc->bhwc", probs, windows,
                    precision=jax.lax.Precision.HIGHEST)


def intra_reconstruction(*, query: jax.Array, refs: jax.Array,
                         ref_labels: jax.Array, target_labels: jax.Array,
                         radius: int = 6, stride: int = 4,
                         scale: float = SCALE
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L4: stride-4 reconstruction of the target's dropped colour channel.

  Ŷ4 = sum A4 Y4 with Y4 the references' labels subsampled [::4, ::4];
  Ŷ4 is upsampled bilinearly (PyTorch, align_corners=False) to the frame
  and compared by SmoothL1(20 Ŷ4, 20 Y), beta 1, mean over pixels
  (`main_dis.py:236-237`).

  Args:
    query: float [B, h, w, C] target f4.
    refs: float [B, R, h, w, C] reference f4.
    ref_labels: float [B, R, H, W, C_y] reference labels at full size.
    target_labels: float [B, H, W, C_y].
    radius: window radius r (6).
    stride: feature stride (4); h = ceil(H / stride).
    scale: factor inside the SmoothL1 (20).

  Returns:
    (loss, {"probs": A4 [B, h, w, R, P*P], "prediction": Ŷ4 [B, h, w,
    C_y]}).
  """
  probs = intra_affinity(query, refs, radius)
  small = subsample_labels(ref_labels, stride)
  if small.shape[2:4] != query.shape[1:3]:
    raise ValueError(f"labels subsampled by {stride} are {small.shape[2:4]}"
                     f", features {query.shape[1:3]}.")
  prediction = reconstruct(probs, small, radius)
  upsampled = torch_resize.resize(prediction, target_labels.shape[1:3],
                                  "bilinear")
  loss = smooth_l1(scale * upsampled, scale * target_labels)
  return loss, {"probs": probs, "prediction": prediction}
