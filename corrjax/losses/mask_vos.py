"""Mask-VOS losses: segmentation (Eqs. 5-10), short- and long-term (11-15).

Li et al., "Unified Mask Embedding and Correspondence Learning for
Self-Supervised Video Segmentation", CVPR 2023; equation numbers are the
paper's. Full loss (Eq. 16): L = L_seg + 0.1 L_short + 0.5 L_long.

Conventions. Pixel embeddings are float [B, P, D] with P = H*W cells in
row-major (y outer, x inner) order, or [B, N*P, D] for N stacked reference
frames (frame outer). Keys of the visual encoder E are L2-normalised; the
correspondence losses normalise their inputs again (cosine similarity, as
Eqs. 12 and 14 state). The paper sums over pixels and videos; these average
(a constant factor, folded into the learning rate). The paper's softmaxes
have no temperature (temperature=1 here); the released code divides by 0.05
(`TEST.TEMP`, reference/liir_maskvos.md §2.4-2.5).

Affinity layout (Eq. 6): A [B, N*P_r, P_q], A[b, r, q] = softmax over the
reference axis r of <k_r, k_q> / temperature, so each query column is a
convex combination of references and A^T V_r (Eq. 7), A^T Y_r (Eq. 8) are
weighted averages.

Several objects per video (STCN soft aggregation, as the released
`framework_mask.py` L254-260): each object o is decoded on its own into a
probability p_o = sigmoid(logit_o); p_bg = prod_o (1 - p_o); the O+1
probabilities are clamped to [1e-7, 1 - 1e-7] and turned into logits
log(p / (1 - p)), whose softmax is the final segmentation.
"""

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST
CLAMP = 1e-7


def _normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(
      jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def _cross_entropy(logits: jax.Array, labels: jax.Array,
                   valid: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Mean CE and accuracy over [B, P] rows of logits [B, P, C]."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  acc = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  w = (jnp.ones(nll.shape, jnp.float32) if valid is None
       else valid.astype(jnp.float32))
  denom = jnp.maximum(w.sum(), 1.0)
  return (nll * w).sum() / denom, (acc * w).sum() / denom


def cosine_logits(query: jax.Array, key: jax.Array, *,
                  temperature: float) -> jax.Array:
  """<q_k, k_l> / temperature of unit vectors: [B, P_q, P_k]."""
  return jnp.einsum("bpd,bqd->bpq", _normalize(query), _normalize(key),
                    precision=_HIGHEST) / temperature


def short_term_loss(*, warped_next: jax.Array, of_warped: jax.Array,
                    temperature: float = 1.0,
                    valid: jax.Array | None = None
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_short (Eq. 12): pixel-wise InfoNCE between aligned pixels.

  Args:
    warped_next: X_{t+1} = Phi(E(I_{t+1})), float [B, P, D].
    of_warped: X'_t = E(Phi(I_t)), float [B, P, D], same cell grid.
    temperature: softmax temperature (1 in the paper).
    valid: optional bool [B, P] pixels k that count.

  Returns:
    (loss, {"short_loss", "short_acc"}): mean over k of
    -log softmax_l(<x_{t+1}^k, x'_t^l>)[k].
  """
  logits = cosine_logits(warped_next, of_warped, temperature=temperature)
  b, p = logits.shape[:2]
  labels = jnp.broadcast_to(jnp.arange(p), (b, p))
  loss, acc = _cross_entropy(logits, labels, valid)
  return loss, {"short_loss": loss, "short_acc": acc}


def long_term_loss(*, of_warped: jax.Array, warped: jax.Array,
                   target: jax.Array, temperature: float = 1.0,
                   valid: jax.Array | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_long (Eqs. 14-15) between distant frames t' and t.

  o_k = argmax_o <x'^k_{t'}, i^o_t> (Eq. 14; the softmax does not move the
  argmax) is a constant label (no gradient); then CE of the logits
  <x^k_{t'}, i^l_t> over l against o_k (Eq. 15).

  Args:
    of_warped: X'_{t'} = E(Phi(I_{t'})), float [B, P, D] (labels only).
    warped: X_{t'} = Phi(E(I_{t'})), float [B, P, D], same cell grid.
    target: I_t = E(I_t), float [B, P_t, D].
    temperature: softmax temperature (1 in the paper).
    valid: optional bool [B, P].

  Returns:
    (loss, {"long_loss", "long_acc"}); long_acc: how often the argmax of
    Eq. 15's logits is o_k.
  """
  labels = jnp.argmax(cosine_logits(
      jax.lax.stop_gradient(of_warped), jax.lax.stop_gradient(target),
      temperature=1.0), axis=-1)
  logits = cosine_logits(warped, target, temperature=temperature)
  loss, acc = _cross_entropy(logits, labels, valid)
  return loss, {"long_loss": loss, "long_acc": acc}


def affinity(ref_keys: jax.Array, query_keys: jax.Array, *,
             temperature: float = 1.0,
             ref_valid: jax.Array | None = None) -> jax.Array:
  """A = softmax over references of I_r I_q^T (Eq. 6).

  Args:
    ref_keys: I_r, float [B, N*P_r, D] (N frames stacked, Eq. 5).
    query_keys: I_q, float [B, P_q, D].
    temperature: divides the dot products (1 in the paper, 0.05 in the
      released code).
    ref_valid: optional bool [B, N*P_r]; False excludes a reference pixel
      (empty slots of a fixed-size memory). At least one must be True.

  Returns:
    float [B, N*P_r, P_q]; every column sums to 1.
  """
  logits = jnp.einsum("brd,bqd->brq", ref_keys, query_keys,
                      precision=_HIGHEST) / temperature
  if ref_valid is not None:
    logits = jnp.where(ref_valid[..., None], logits, -jnp.inf)
  return jax.nn.softmax(logits, axis=1)


def readout(aff: jax.Array, ref_values: jax.Array) -> jax.Array:
  """A^T X: V_q = A^T V_r (Eq. 7) and Ybar_q = A^T Y_r (Eq. 8).

  Args:
    aff: float [B, N*P_r, P_q] from `affinity`.
    ref_values: float [B, N*P_r, C] (values V_r, or masks Y_r, one channel
      per object).

  Returns:
    float [B, P_q, C].
  """
  return jnp.einsum("brq,brc->bqc", aff, ref_values, precision=_HIGHEST)


def soft_aggregate(object_logits: jax.Array,
                   object_valid: jax.Array | None = None) -> jax.Array:
  """STCN soft aggregation of per-object logits into O+1 class logits.

  Args:
    object_logits: float [B, O, ...] one decoder logit per object.
    object_valid: optional bool [B, O]; an absent object gets p = 0 (then
      clamped to 1e-7), so it neither claims pixels nor lowers p_bg.

  Returns:
    float [B, O+1, ...] logits, class 0 = background; their softmax over
    axis 1 is the segmentation.
  """
  prob = jax.nn.sigmoid(object_logits)
  if object_valid is not None:
    shape = object_valid.shape + (1,) * (prob.ndim - 2)
    prob = jnp.where(object_valid.reshape(shape), prob, 0.0)
  bg = jnp.prod(1.0 - prob, axis=1, keepdims=True)
  p = jnp.clip(jnp.concatenate([bg, prob], axis=1), CLAMP, 1.0 - CLAMP)
  return jnp.log(p / (1.0 - p))


def segmentation_loss(*, object_logits: jax.Array, labels: jax.Array,
                      object_valid: jax.Array | None = None,
                      valid: jax.Array | None = None
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_seg (Eq. 10): CE of the aggregated prediction vs the pseudo mask.

  Args:
    object_logits: float [B, O, H, W] decoder logits, one map per object.
    labels: int [B, H, W] pseudo mask in [0, O] (0 = background).
    object_valid: optional bool [B, O] (videos with fewer pseudo objects).
    valid: optional bool [B, H, W] pixels that count.

  Returns:
    (loss, {"seg_loss", "seg_acc"}).
  """
  logits = soft_aggregate(object_logits, object_valid)
  b, c = logits.shape[:2]
  logits = jnp.moveaxis(logits, 1, -1).reshape(b, -1, c)
  flat_valid = None if valid is None else valid.reshape(b, -1)
  loss, acc = _cross_entropy(logits, labels.reshape(b, -1), flat_valid)
  return loss, {"seg_loss": loss, "seg_acc": acc}


def total_loss(*, seg: jax.Array, short: jax.Array, long: jax.Array,
               short_weight: float = 0.1,
               long_weight: float = 0.5) -> jax.Array:
  """Eq. 16: L_seg + lambda_1 L_short + lambda_2 L_long (0.1, 0.5)."""
  return seg + short_weight * short + long_weight * long
