"""SFC's fine-grained (FC) dense BYOL regression loss."""

import jax
import jax.numpy as jnp

from corrjax.ops import geometry
from corrjax.ops import l2norm


def regression_loss(*, pred: jax.Array, target: jax.Array,
                    boxes_pred: jax.Array, boxes_target: jax.Array,
                    radius: float) -> jax.Array:
  """One direction of the FC loss (SFC `fine_grained.py:78-122`).

  -2 x the batch mean of the per-sample mean cosine similarity over positive
  cell pairs; a sample without positives contributes ~0 (denominator + 1e-6).

  Args:
    pred: float [B, h, w, D] L2-normalised online predictions of one view.
    target: float [B, h, w, D] L2-normalised target projections of the other.
    boxes_pred, boxes_target: float [B, 4] crop boxes of the two views.
    radius: positive radius, in units of the larger cell diagonal.

  Returns:
    Scalar loss.
  """
  b, h, w, d = pred.shape
  logits = jnp.einsum("bqd,bkd->bqk", pred.reshape(b, h * w, d),
                      target.reshape(b, h * w, d))
  mask = geometry.positive_mask(boxes_pred, boxes_target, h, w, radius)
  per_sample = jnp.sum(logits * mask, axis=(1, 2)) / (
      jnp.sum(mask, axis=(1, 2)) + 1e-6)
  return -2.0 * jnp.mean(per_sample)


def symmetric_loss(*, pred1: jax.Array, pred2: jax.Array, target1: jax.Array,
                   target2: jax.Array, boxes1: jax.Array, boxes2: jax.Array,
                   radius: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The FC objective (SFC `fine_grained.py:162-163`): the sum of both ways.

  Args:
    pred1, pred2: float [B, h, w, D] online predictions of views 1 and 2
      (normalised here).
    target1, target2: float [B, h, w, D] target projections (normalised here;
      gradients stopped here).
    boxes1, boxes2: float [B, 4] crop boxes of views 1 and 2.
    radius: positive radius in cell diagonals.

  Returns:
    (loss, terms): the scalar loss and {"loss_12", "loss_21",
    "positives_per_cell"} for logging.
  """
  pred1, pred2 = l2norm.l2_normalize(pred1), l2norm.l2_normalize(pred2)
  target1 = jax.lax.stop_gradient(l2norm.l2_normalize(target1))
  target2 = jax.lax.stop_gradient(l2norm.l2_normalize(target2))
  loss_12 = regression_loss(pred=pred1, target=target2, boxes_pred=boxes1,
                            boxes_target=boxes2, radius=radius)
  loss_21 = regression_loss(pred=pred2, target=target1, boxes_pred=boxes2,
                            boxes_target=boxes1, radius=radius)
  h, w = pred1.shape[1:3]
  positives = geometry.positive_mask(boxes1, boxes2, h, w, radius)
  terms = {"loss_12": loss_12, "loss_21": loss_21,
           "positives_per_cell": jnp.mean(jnp.sum(positives, axis=-1))}
  return loss_12 + loss_21, terms
