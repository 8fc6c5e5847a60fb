"""MoCo's first-in-first-out queue of negative keys, as pure array updates.

Reference: facebookresearch/moco@7397dfe `moco/builder.py:49-53` (init) and
`:65-79` (`_dequeue_and_enqueue`). The reference stores the queue as
[D, K] columns; here it is [K, D] rows, so row j is the reference's column j.

Under jit the keys passed to `enqueue` are the global batch (a jax.Array
sharded over 'data'), which is exactly the reference's `concat_all_gather`
of the per-GPU keys in rank order: global row i is example i of the batch.
The queue itself may be replicated or sharded along K; the result does not
depend on how (tests/ops/queue_test.py).
"""

import jax
import jax.numpy as jnp

from corrjax.ops import l2norm


def init_queue(rng: jax.Array, *, size: int, dim: int) -> dict[str, jax.Array]:
  """A queue of `size` random unit keys and a zero pointer.

  Args:
    rng: PRNG key.
    size: K, the number of negatives (65536 in MoCo).
    dim: D, the key dimension (128).

  Returns:
    {"queue": float32 [K, D] rows ~ N(0, I) normalised to unit length,
    "queue_ptr": int32 [] = 0}.
  """
  if size < 1 or dim < 1:
    raise ValueError(f"queue size {size} and dim {dim} must be positive.")
  keys = jax.random.normal(rng, (size, dim), jnp.float32)
  keys = l2norm.l2_normalize(keys)
  return {"queue": keys, "queue_ptr": jnp.zeros((), jnp.int32)}


def check_sizes(queue_size: int, batch_size: int) -> None:
  """The reference asserts K % batch == 0 (`builder.py:73`): one line here."""
  if batch_size < 1 or queue_size % batch_size:
    raise ValueError(
        f"MoCo queue size {queue_size} must be a multiple of the global "
        f"batch size {batch_size} (moco/builder.py:73).")


def enqueue(queue: jax.Array, ptr: jax.Array,
            keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Overwrites rows [ptr, ptr + B) with `keys`; ptr <- (ptr + B) mod K.

  Args:
    queue: float [K, D].
    ptr: int32 [], a multiple of B in [0, K).
    keys: float [B, D], the whole global batch of new keys, in batch order.

  Returns:
    (new queue [K, D], new pointer int32 []). Rows outside the slice keep
    their values; after K / B calls the oldest batch is overwritten first.

  Raises:
    ValueError: K is not a multiple of B, or D differs.
  """
  size, dim = queue.shape
  check_sizes(size, keys.shape[0])
  if keys.shape[1] != dim:
    raise ValueError(f"keys have dimension {keys.shape[1]}, the queue {dim}.")
  keys = jax.lax.stop_gradient(keys).astype(queue.dtype)
  queue = jax.lax.dynamic_update_slice(queue, keys, (ptr, jnp.int32(0)))
  return queue, ((ptr + keys.shape[0]) % size).astype(jnp.int32)
