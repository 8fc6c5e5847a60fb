"""L2 normalisation along an axis, as torch.nn.functional.normalize."""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1,
                 eps: float = 1e-12) -> jax.Array:
  """torch.nn.functional.normalize: x / max(||x||, eps).

  Args:
    x: float [..., D, ...].
    axis: the axis normalised.
    eps: lower bound on the norm (torch's default 1e-12).

  Returns:
    x's shape and dtype, unit L2 norm along `axis` where ||x|| >= eps.
  """
  norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)
