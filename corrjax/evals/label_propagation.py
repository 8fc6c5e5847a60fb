"""Label propagation with the CRW protocol (videowalk `code/test.py`).

Semantics (videowalk `code/utils/test_utils.py:123-171`, `code/test.py:
100-148`, `code/data/vos.py:138-156`): the video is front-padded with
`context` copies of frame 0 carrying the ground-truth labels. For target
frame t >= 1 the keys are frame 0 with its labels (never radius-restricted)
plus the `context` frames before t in the padded video (copies of frame 0
while t < context) with their soft predictions, radius-restricted: a key
cell is admissible iff its Euclidean distance to the query cell, in feature
cells, is < radius (strict). One top-k over all (context + 1) * h * w
positions jointly; weights softmax(top-k similarities / temperature); the
prediction is the weighted sum of the keys' soft labels, written back
unhardened.
"""

import functools

import jax
import jax.numpy as jnp


def _radius_bias(h: int, w: int, radius: float) -> jax.Array:
  """float [h*w, h*w]: 0 where cells are < radius apart, -1e10 elsewhere."""
  ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
  cells = jnp.stack([ys.ravel(), xs.ravel()], -1).astype(jnp.float32)
  dist = jnp.sqrt(jnp.sum((cells[:, None] - cells[None]) ** 2, -1))
  return jnp.where(dist < radius, 0.0, -1e10)


@functools.partial(jax.jit, static_argnames=("topk", "radius", "context",
                                             "temperature", "query_chunk"))
def propagate(feats: jax.Array, labels0: jax.Array, *, topk: int,
              radius: float, context: int, temperature: float,
              query_chunk: int = 1024) -> jax.Array:
  """Propagates frame 0's labels through a video.

  Args:
    feats: float [T, h, w, C], one L2-normalised vector per cell.
    labels0: float [h, w, K], frame 0's labels at feature resolution.
    topk: neighbours per query cell.
    radius: spatial radius in feature cells for the preceding frames.
    context: number of preceding frames used as keys.
    temperature: softmax temperature.
    query_chunk: query cells per affinity block (bounds peak memory).

  Returns:
    float [T, h, w, K] soft labels; index 0 is `labels0`.
  """
  t_len, h, w, c = feats.shape
  n, k_cls = h * w, labels0.shape[-1]
  flat = feats.reshape(t_len, n, c)
  y0 = labels0.reshape(n, k_cls).astype(feats.dtype)
  bias = _radius_bias(h, w, radius)
  pad = (-n) % query_chunk
  chunks = (n + pad) // query_chunk

  def predict(queries, keys, key_labels):
    # queries [n, c]; keys [(L+1) n, c] (frame 0 first); labels likewise.
    qs = jnp.pad(queries, ((0, pad), (0, 0))).reshape(chunks, query_chunk, c)
    bs = jnp.pad(bias, ((0, pad), (0, 0))).reshape(chunks, query_chunk, n)

    def one_chunk(args):
      q, b = args
      sim = q @ keys.T  # [chunk, (L+1) n]
      short = sim[:, n:].reshape(-1, context, n) + b[:, None, :]
      sim = jnp.concatenate([sim[:, :n], short.reshape(q.shape[0], -1)], 1)
      top, idx = jax.lax.top_k(sim / temperature, topk)
      weights = jax.nn.softmax(top, axis=-1)
      return jnp.einsum("qk,qkc->qc", weights, key_labels[idx])

    out = jax.lax.map(one_chunk, (qs, bs))
    return out.reshape(-1, k_cls)[:n]

  def step(carry, query):
    mem_feats, mem_labels = carry  # [L, n, c], [L, n, K], oldest first
    keys = jnp.concatenate([flat[0][None], mem_feats]).reshape(-1, c)
    labels = jnp.concatenate([y0[None], mem_labels]).reshape(-1, k_cls)
    pred = predict(query, keys, labels)
    carry = (jnp.concatenate([mem_feats[1:], query[None]]),
             jnp.concatenate([mem_labels[1:], pred[None]]))
    return carry, pred

  init = (jnp.broadcast_to(flat[0], (context, n, c)),
          jnp.broadcast_to(y0, (context, n, k_cls)))
  _, preds = jax.lax.scan(step, init, flat[1:])
  out = jnp.concatenate([y0[None], preds])
  return out.reshape(t_len, h, w, k_cls)
