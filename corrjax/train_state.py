"""The functional train state: every array the training loop carries."""

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
  """Plain pytrees, sharded by one `out_shardings` tree, saved by orbax.

  Attributes:
    step: int32 scalar, number of optimiser updates applied.
    params: online network parameters.
    batch_stats: online BatchNorm running statistics.
    opt_state: optax state of `params`.
    rng: PRNG key; per-step keys are `fold_in(rng, step)`.
    target_params: EMA target parameters (BYOL-style methods), else None.
    target_batch_stats: target BatchNorm statistics, else None.
    extra: method-specific arrays (e.g. MoCo's queue of keys and its
      pointer as {"queue": [K, D], "queue_ptr": int32 []}), else None.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  target_params: Any = None
  target_batch_stats: Any = None
  extra: Any = None
