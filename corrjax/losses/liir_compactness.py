"""LIIR's compactness prior on the stride-4 affinity.

Reference: shasha521/LIIR_pytorch@21c7ba5 `models/colorizer_momen.py`
(`make_gaussian` 29-39, compactness 177-196, training branch 194-196) and
`main_dis.py:245-246` (added with weight 1).

Per query cell and reference, over that reference's window of P x P
offsets (row-major, index k = y P + x, y, x in [0, P)): the two largest
probabilities v1, v2 of the detached A4 at window cells c1, c2; weights
w = softmax(v1, v2) (a softmax of probabilities, as the reference); target
G(y, x) = sum_i w_i exp(-4 ln 2 ((x - x_i)^2 + (y - y_i)^2) / sigma^2),
sigma 1 in stride-4 cells (not normalised, peak height w_i); mask m =
1[max(v1, v2) > 0.5]. Loss SmoothL1(20 A4 m, 20 G m), beta 1, mean over
every entry (masked entries count as zeros). Gradients reach A4 only.
"""

import jax
import jax.numpy as jnp
import numpy as np

from corrjax.losses import liir_reconstruction

SIGMA = 1.0  # `make_gaussian(sigma=1)`.
THRESHOLD = 0.5  # `:195` in training (0.1 at test, `:191`).


def compactness_target(probs: jax.Array, *, sigma: float = SIGMA,
                       threshold: float = THRESHOLD
                       ) -> tuple[jax.Array, jax.Array]:
  """Two-peak Gaussian target and its mask, from detached probabilities.

  Args:
    probs: float [..., P*P] window probabilities (A4 per reference).
    sigma: Gaussian width (the reference's FWHM-style sigma).
    threshold: the mask keeps windows whose top probability exceeds it.

  Returns:
    (target float [..., P*P], mask bool [..., 1]).
  """
  n = probs.shape[-1]
  p = int(round(np.sqrt(n)))
  if p * p != n:
    raise ValueError(f"window of {n} cells is not square.")
  values, index = jax.lax.top_k(jax.lax.stop_gradient(probs), 2)
  weights = jax.nn.softmax(values, axis=-1)
  cy, cx = index // p, index % p
  ys = jnp.arange(n) // p
  xs = jnp.arange(n) % p
  d2 = ((xs - cx[..., None]) ** 2 + (ys - cy[..., None]) ** 2)
  heat = jnp.exp(-4 * np.log(2.0) * d2.astype(probs.dtype) / sigma**2)
  target = jnp.sum(weights[..., None] * heat, axis=-2)
  mask = jnp.max(values, axis=-1, keepdims=True) > threshold
  return target, mask


def compactness_loss(probs: jax.Array, *, sigma: float = SIGMA,
                     threshold: float = THRESHOLD,
                     scale: float = liir_reconstruction.SCALE
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_compact (`colorizer_momen.py:177-196`).

  Args:
    probs: float [B, h, w, R, P*P], A4 from `intra_affinity` (one softmax
      over references x window; each reference's slice is used alone).
    sigma: Gaussian width in cells (1).
    threshold: mask threshold on the top probability (0.5).
    scale: factor inside the SmoothL1 (20).

  Returns:
    (loss, {"compact_fraction": fraction of windows masked in}).
  """
  target, mask = compactness_target(probs, sigma=sigma, threshold=threshold)
  m = mask.astype(probs.dtype)
  loss = liir_reconstruction.smooth_l1(scale * probs * m, scale * target * m)
  return loss, {"compact_fraction": jnp.mean(m)}
