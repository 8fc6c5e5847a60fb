"""LIIR's inter-video reconstruction at stride 8 with a queue of negatives.

Reference: shasha521/LIIR_pytorch@21c7ba5 `models/colorizer_momen.py`
(queue buffers 79-82; intra logits 135-137; negatives 143-160; unified
softmax 162-168; labels 209-215) and `main_dis.py:241-244` (weight 0.5).

For a target cell q, intra logits s_k = <f8_t(q), key_r(q + d_k)> over a
7 x 7 window (r = 3) of the reference's momentum keys; inter logits
<f8_t(q), neg_n(q + d)> over the same aligned window of every negative n;
cells outside the frame give logit 0 (and stay in the sum). One softmax
whose numerator is intra only:

  A8(q, k) = exp(s_k) / (sum_k' exp(s_k') + sum_n sum_d exp(<., .>)),
  Ŷ8(q) = sum_k A8(q, k) Y8_ref(q + d_k),

so mass given to other videos is lost ("zero colour"). Y8 are the labels
resized bilinearly (PyTorch, align_corners=False) to the stride-8 grid
(`Colorizer.prep2`, `:96-97`); loss SmoothL1(20 Ŷ8, 20 Y8_target), beta 1.

Negatives (`:143-160`): queue entries whose video id differs from the
query's; the reference keeps, for every batch item, only its first min_len
such entries in queue order, min_len the smallest count in the batch (to
stack them). `negative_mask(equalize=True)` reproduces that exactly as a
mask; equalize=False keeps every entry of another video. The reference
takes min_len over each GPU's local batch; here it is over the batch
passed in (under jit, the global batch). Empty slots have id -1.

One batched contraction instead of ~960 sampler calls: gathering every
negative's windows would take N h w 49 C floats (24 GB at the reference's
960 x 32 x 32 x 128), so the query's windows are gathered instead
(B h w 49 C) and F[b, n, p, d'] = <neg_n(p), f8_t(p + d')> is one einsum.
The logit of query q against negative n at q + d is F[b, n, q + d, -d];
logsumexp over n is taken first (per b, p, d'), then the 49 shifted terms
are gathered back to q; a window cell outside the frame contributes N_b
exp(0) (N_b: negatives of item b). Equal to the direct sum up to rounding.
"""

import jax
import jax.numpy as jnp

from corrjax.losses import liir_reconstruction as recon
from corrjax.ops import torch_resize

WEIGHT = 0.5  # `main_dis.py:244`.


def negative_mask(queue_ids: jax.Array, video_ids: jax.Array, *,
                  equalize: bool = True) -> jax.Array:
  """Which queue entries are negatives of which batch item (`:143-155`).

  Args:
    queue_ids: int [N] video id of each entry (-1: empty slot).
    video_ids: int [B] video id of each query.
    equalize: keep only each item's first min_b(count) negatives in queue
      order, as the reference's min_len.

  Returns:
    bool [B, N].
  """
  valid = ((queue_ids[None, :] >= 0) &
           (queue_ids[None, :] != video_ids[:, None]))
  if equalize:
    rank = jnp.cumsum(valid, axis=1)
    min_len = jnp.min(jnp.sum(valid, axis=1))
    valid = valid & (rank <= min_len)
  return valid


def inter_log_mass(query: jax.Array, negatives: jax.Array,
                   mask: jax.Array, radius: int) -> jax.Array:
  """log sum over negatives x window of exp(inter logit), per query cell.

  Args:
    query: float [B, h, w, C], the target's online f8.
    negatives: float [N, h, w, C], the queue's momentum keys (detached).
    mask: bool [B, N] from `negative_mask`.
    radius: window radius r (3).

  Returns:
    float [B, h, w]; -inf where item b has no negative.
  """
  windows = recon.unfold_windows(query, radius)  # [B, h, w, P2, C].
  logits = jnp.einsum("nhwc,bhwdc->bnhwd", negatives, windows,
                      precision=jax.lax.Precision.HIGHEST)
  count = jnp.sum(mask, axis=1)  # [B].
  has = count > 0
  # Rows without negatives get finite stand-ins, discarded below, so that
  # no -inf - -inf reaches the gradient.
  keep = mask | ~has[:, None]
  per_cell = jax.nn.logsumexp(
      jnp.where(keep[:, :, None, None, None], logits, -jnp.inf), axis=1)
  # per_cell[b, p, d'] = log sum_n exp <neg_n(p), f8_t(p + d')>. The query
  # at q meets neg(q + d) as per_cell[b, q + d, -d]; offsets are
  # symmetric, so -d_k is index P2 - 1 - k.
  log_count = jnp.log(jnp.maximum(count, 1).astype(query.dtype))
  shifted = recon.unfold_windows(per_cell, radius, pad_value=log_count)
  # terms[..., k] = shifted[..., k, P2 - 1 - k], the anti-diagonal.
  terms = jnp.diagonal(jnp.flip(shifted, -1), axis1=-2, axis2=-1)
  mass = jax.nn.logsumexp(terms, axis=-1)
  return jnp.where(has[:, None, None], mass, -jnp.inf)


def inter_reconstruction(*, query: jax.Array, keys: jax.Array,
                         ref_labels: jax.Array, target_labels: jax.Array,
                         negatives: jax.Array, negatives_mask: jax.Array,
                         radius: int = 3, scale: float = recon.SCALE
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L8 (unweighted; the total uses 0.5 L8).

  Args:
    query: float [B, h, w, C] target f8 (online conv_semantic).
    keys: float [B, h, w, C] reference f8 (momentum head, detached).
    ref_labels: float [B, H, W, C_y] reference labels at full size.
    target_labels: float [B, H, W, C_y].
    negatives: float [N, h, w, C] queue keys (detached); N may be 0.
    negatives_mask: bool [B, N] (`negative_mask`).
    radius: window radius (3: 7 x 7).
    scale: factor inside the SmoothL1 (20).

  Returns:
    (loss, {"prediction": Ŷ8 [B, h, w, C_y], "intra_mass": mean over cells
    of the softmax mass on intra candidates, "negatives": mean negatives
    per item}).
  """
  size = query.shape[1:3]
  intra = recon.local_correlation(query, jax.lax.stop_gradient(keys), radius)
  log_z = jax.nn.logsumexp(intra, axis=-1)
  if negatives.shape[0]:
    inter = inter_log_mass(query, jax.lax.stop_gradient(negatives),
                           negatives_mask, radius)
    log_z = jnp.where(jnp.isfinite(inter),
                      jnp.logaddexp(log_z, jnp.where(jnp.isfinite(inter),
                                                     inter, log_z)),
                      log_z)
  probs = jnp.exp(intra - log_z[..., None])
  y_ref = torch_resize.resize(ref_labels, size, "bilinear")
  y_tgt = torch_resize.resize(target_labels, size, "bilinear")
  prediction = jnp.einsum("bhwk,bhwkc->bhwc", probs,
                          recon.unfold_windows(y_ref, radius),
                          precision=jax.lax.Precision.HIGHEST)
  loss = recon.smooth_l1(scale * prediction, scale * y_tgt)
  return loss, {"prediction": prediction,
                "intra_mass": jnp.mean(jnp.sum(probs, -1)),
                "negatives": jnp.mean(jnp.sum(negatives_mask, 1)
                                      .astype(jnp.float32))}
