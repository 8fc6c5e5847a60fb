"""BYOL's global regression loss: 2 - 2 cos between prediction and target.

Reference: google-deepmind/deepmind-research@f5de0ed `byol/utils/helpers.py:
109-112` (`regression_loss` = ||n(x) - n(y)||^2 = 2 - 2 cos) and
`byol/byol_experiment.py:243-250` (symmetrised: pred1 vs target2 plus pred2
vs target1, then the batch mean).
"""

import jax
import jax.numpy as jnp

from corrjax.ops import l2norm


def regression_loss(*, pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-example 2 - 2 cos(pred, target).

  Args:
    pred: float [B, D] online predictions (any norm).
    target: float [B, D] target projections (any norm; gradient stopped).

  Returns:
    float [B] in [0, 4].
  """
  pred = l2norm.l2_normalize(pred)
  target = jax.lax.stop_gradient(l2norm.l2_normalize(target))
  return 2.0 - 2.0 * jnp.sum(pred * target, axis=-1)


def symmetric_loss(
    *, pred1: jax.Array, pred2: jax.Array, target1: jax.Array,
    target2: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """mean_b [l(pred1_b, target2_b) + l(pred2_b, target1_b)].

  Args:
    pred1, pred2: float [B, D] online predictions of views 1 and 2.
    target1, target2: float [B, D] target projections of views 1 and 2.

  Returns:
    (loss in [0, 8], terms {"loss_12", "loss_21"}: the two directions).
  """
  loss_12 = jnp.mean(regression_loss(pred=pred1, target=target2))
  loss_21 = jnp.mean(regression_loss(pred=pred2, target=target1))
  return loss_12 + loss_21, {"loss_12": loss_12, "loss_21": loss_21}
