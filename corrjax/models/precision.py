"""Mixed precision: `config.model.dtype` -> the compute dtype of the networks.

Convolutions and dense layers compute in this dtype (their inputs and
float32 kernels are cast to it); parameters, BatchNorm statistics (Flax
reduces them in float32 whatever the dtype), the optimiser state and the
losses stay float32: each model casts its outputs back to float32
(`to_float32`), so every loss downstream is computed in float32. 'bfloat16'
is the point on TPUs and recent GPUs; 'float32' (the default) reproduces the
references.
"""

from typing import Any

import jax
import jax.numpy as jnp

# 'float32' is None, Flax's "the dtype of the inputs and parameters": float32
# in every run, float64 in the x64 parity tests (an explicit float32 would
# round those to float32).
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config: Any) -> Any:
  """The compute dtype named by `model_config.dtype` ('float32' when absent,
  as in configs saved before the field existed): None for 'float32' (see
  DTYPES), jnp.bfloat16 for 'bfloat16'."""
  name = model_config.get("dtype", "float32") or "float32"
  if name not in DTYPES:
    raise ValueError(f"Unknown model.dtype {name!r}; choose from "
                     f"{sorted(DTYPES)}.")
  return DTYPES[name]


def to_float32(tree: Any) -> Any:
  """Casts every floating leaf of `tree` narrower than float32 (bfloat16,
  float16) to float32; float32 and float64 leaves (the x64 parity tests)
  and non-floating leaves are unchanged."""
  def cast(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return x
  return jax.tree_util.tree_map(cast, tree)
