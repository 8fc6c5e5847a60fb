"""MoCo's InfoNCE loss: one positive key against a queue of negatives.

Reference: facebookresearch/moco@7397dfe `moco/builder.py:155-168` (logits)
and `main_moco.py:289,417-418` (cross-entropy with label 0, mean over the
batch). Under jit the batch is global, so the mean equals DDP's average of
per-GPU means over equal shards.
"""

import jax
import jax.numpy as jnp


def moco_logits(*, query: jax.Array, key: jax.Array, queue: jax.Array,
                temperature: float) -> jax.Array:
  """[l_pos, l_neg] / T (`moco/builder.py:157-165`).

  Args:
    query: float [B, D] L2-normalised queries q.
    key: float [B, D] L2-normalised positive keys k (row i pairs with q_i).
    queue: float [K, D] L2-normalised negative keys, one per row (the
      reference stores the transpose, [D, K]).
    temperature: softmax temperature T (0.2 in MoCo v2, 0.07 in v1).

  Returns:
    float [B, 1 + K]: column 0 is q_i . k_i, column 1 + j is q_i . queue_j,
    all divided by T.
  """
  l_pos = jnp.sum(query * key, axis=-1, keepdims=True)
  l_neg = jnp.einsum("nc,kc->nk", query, queue)
  return jnp.concatenate([l_pos, l_neg], axis=1) / temperature


def infonce_loss(*, query: jax.Array, key: jax.Array, queue: jax.Array,
                 temperature: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross-entropy of `moco_logits` with the positive (column 0) as label.

  No gradient flows into `key` or `queue` (the reference computes keys under
  `torch.no_grad()` and uses `queue.clone().detach()`).

  Args:
    query, key, queue, temperature: as `moco_logits`.

  Returns:
    (loss, terms): the scalar mean loss and {"acc1": fraction of queries
    whose positive has the largest logit (`main_moco.py:422`), "l_pos",
    "l_neg": mean positive and negative cosine similarities}.
  """
  key = jax.lax.stop_gradient(key)
  queue = jax.lax.stop_gradient(queue)
  logits = moco_logits(query=query, key=key, queue=queue,
                       temperature=temperature)
  loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
  terms = {
      "acc1": jnp.mean((jnp.argmax(logits, axis=1) == 0).astype(jnp.float32)),
      "l_pos": jnp.mean(logits[:, 0]) * temperature,
      "l_neg": jnp.mean(logits[:, 1:]) * temperature,
  }
  return loss, terms
