"""Label propagation with the CRW protocol (videowalk `code/test.py`).

Semantics (videowalk@047f3f4 `code/utils/test_utils.py:123-171`,
`code/test.py:100-148`, `code/data/vos.py:138-156`,
`code/utils/__init__.py:349-362`): the video is front-padded with `context`
copies of frame 0 carrying the ground-truth labels. For target frame t >= 1
the keys are frame 0 with its labels (never radius-restricted) plus the
`context` frames before t in the padded video (copies of frame 0 while
t < context) with their soft predictions, radius-restricted: a key cell is
admissible iff its Euclidean distance to the query cell, in feature cells, is
< radius (strict). One top-k over all (context + 1) * h * w positions
jointly; weights softmax(top-k similarities / temperature); the prediction is
the weighted sum of the keys' soft labels, written back unhardened.

Memory-bounded implementation. The reference materialises every target's
keys (C * N * (L + 1) * HW floats) and a dense HW x HW radius mask; here
nothing larger than one group of query blocks is ever formed:

* Query cells are tiled into blocks of `block` x `block` cells. For a block,
  only the (block + 2R) x (block + 2R) key window around it can hold
  admissible short-term keys, R = ceil(radius) - 1 (the largest integer
  offset < radius), clipped to the frame. The memory bank of the `context`
  preceding frames (a ring buffer, initialised with copies of frame 0, as
  features and soft labels) is stored spatially padded by R with zeros, so
  each window is one `dynamic_slice`; window keys outside the strict radius
  or outside the frame get -1e10, as the reference's additive mask.
* Frame 0 is a dense key set (all HW cells, no radius): its similarities
  are computed in chunks of `query_chunk` query cells (one matmul each) and
  only their top-k (values and soft labels) is kept.
* Per block: one matmul against the `context` windows, the top-k of those
  window similarities, then the top-k of the 2k candidates [frame-0 top-k,
  window top-k]. The top-k of a union is the top-k of the parts' top-ks, so
  this equals the reference's single top-k over all (context + 1) * HW
  positions, with far smaller sorts. Softmax, weighted sum of the soft
  labels.
* Blocks are processed `query_chunk // block**2` at a time (`lax.map` with
  `batch_size`), frames by `lax.scan`. Peak memory is O(context * HW * C) for
  the bank plus O(query_chunk * (HW + context * (block + 2R)**2)) for the
  similarities, independent of T.

Ties: candidates are ordered [frame 0, ring slots] rather than the
reference's [frame 0, oldest ... newest], so exactly equal similarities may
be broken differently. Exact ties arise from the copies of frame 0 (which
carry identical labels, so the choice does not matter); for other keys a
different choice needs two similarities equal to float precision at the
top-k boundary, and changes the result by at most their (equal) weight
times their label difference. With the reference's float32 arithmetic
(masked entries: sim - 1e10 == -1e10 exactly) outputs agree to ~1e-6.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_MASKED = -1e10  # Additive mask of the reference (`code/test.py:109-112`).


def _half_window(radius: float, size: int) -> int:
  """Largest integer offset d with |d| < radius, clipped to size - 1."""
  return min(max(int(math.ceil(radius)) - 1, 0), size - 1)


def _window_mask(bh: int, bw: int, ry: int, rx: int,
                 radius: float) -> np.ndarray:
  """bool [bh*bw, (bh+2ry)*(bw+2rx)]: key window cell within radius.

  Distance as `MaskedAttention.make` (`code/utils/__init__.py:349-362`):
  float32 sqrt of the squared cell offset, strictly < radius.
  """
  qy, qx = np.meshgrid(np.arange(bh), np.arange(bw), indexing="ij")
  ky, kx = np.meshgrid(np.arange(bh + 2 * ry) - ry,
                       np.arange(bw + 2 * rx) - rx, indexing="ij")
  d2 = ((ky.ravel()[None] - qy.ravel()[:, None]) ** 2 +
        (kx.ravel()[None] - qx.ravel()[:, None]) ** 2)
  return np.sqrt(d2.astype(np.float32)) < np.float32(radius)


@functools.partial(jax.jit, static_argnames=(
    "topk", "radius", "context", "temperature", "query_chunk", "block"))
def propagate(feats: jax.Array, labels0: jax.Array, *, topk: int,
              radius: float, context: int, temperature: float,
              query_chunk: int = 256, block: int = 8) -> jax.Array:
  """Propagates frame 0's labels through a video.

  Args:
    feats: float [T, h, w, C], one L2-normalised vector per cell.
    labels0: float [h, w, K], frame 0's labels at feature resolution.
    topk: neighbours per query cell.
    radius: spatial radius in feature cells for the preceding frames (keys at
      distance < radius; <= 0: frame 0 only).
    context: number of preceding frames used as keys.
    temperature: softmax temperature.
    query_chunk: query cells per step (rounded to whole blocks); bounds the
      similarity buffers to about query_chunk * (h*w + context *
      (block + 2R)**2) floats.
    block: query block side in cells.

  Returns:
    float [T, h, w, K] soft labels; index 0 is `labels0`.
  """
  t_len, h, w, c = feats.shape
  n, k_cls = h * w, labels0.shape[-1]
  dtype = feats.dtype
  f0 = feats[0].reshape(n, c)
  y0 = labels0.reshape(n, k_cls).astype(dtype)
  use_short = radius > 0 and context > 0

  bh, bw = min(block, h), min(block, w)
  nby, nbx = -(-h // bh), -(-w // bw)
  ry, rx = (_half_window(radius, h), _half_window(radius, w)) if use_short \
      else (0, 0)
  wy, wx = bh + 2 * ry, bw + 2 * rx
  hp, wp = nby * bh + 2 * ry, nbx * bw + 2 * rx  # Padded bank size.
  nq, nwin = bh * bw, wy * wx
  # Frame 0 and the short-term windows each keep their own top-k; keys
  # missing when a set is smaller than topk are -inf with zero labels.
  k0 = topk
  n_extra0 = max(k0 - n, 0)
  y0_ext = jnp.concatenate([y0, jnp.zeros((n_extra0, k_cls), dtype)])
  k1 = min(topk, context * nwin)
  win_mask = jnp.asarray(_window_mask(bh, bw, ry, rx, radius))
  blocks = jnp.stack(jnp.meshgrid(jnp.arange(nby), jnp.arange(nbx),
                                  indexing="ij"), -1).reshape(-1, 2)
  per_step = max(1, query_chunk // nq)

  def pad_frame(x):
    """[h, w, D] -> [hp, wp, D], the frame at (ry, rx), zeros around."""
    return jnp.pad(x, ((ry, hp - ry - h), (rx, wp - rx - w), (0, 0)))

  def frame0_topk(query):
    """Top-k of frame 0's keys for every query cell, in query chunks.

    query [hp, wp, C] -> (similarities / T [n, k0], labels [n, k0, K]).
    """
    q = query[ry:ry + h, rx:rx + w].reshape(n, c)
    chunk = min(n, max(query_chunk, nq))
    q = jnp.pad(q, ((0, (-n) % chunk), (0, 0))).reshape(-1, chunk, c)

    def one_chunk(qc):
      sim = jnp.concatenate(
          [qc @ f0.T, jnp.full((chunk, n_extra0), -jnp.inf, dtype)], 1)
      top, idx = jax.lax.top_k(sim / temperature, k0)
      return top, y0_ext[idx]

    top, lab = jax.lax.map(one_chunk, q)
    return top.reshape(-1, k0)[:n], lab.reshape(-1, k0, k_cls)[:n]

  def block_cells(x, oy, ox):
    """[h, w, D] values of the cells of the block at (oy, ox): [nq, D]."""
    x = jnp.pad(x, ((0, nby * bh - h), (0, nbx * bw - w), (0, 0)))
    return jax.lax.dynamic_slice(x, (oy, ox, 0),
                                 (bh, bw, x.shape[-1])).reshape(nq, -1)

  def predict(query, mem_feats, mem_labels):
    """query [hp, wp, C]; bank [L, hp, wp, C|K] -> pred [h, w, K]."""
    top0, lab0 = frame0_topk(query)
    top0 = top0.reshape(h, w, k0)
    lab0 = lab0.reshape(h, w, k0 * k_cls)

    def one_block(yx):
      oy, ox = yx[0] * bh, yx[1] * bw  # Window origin in padded coords.
      t0 = block_cells(top0, oy, ox)  # [nq, k0]
      l0 = block_cells(lab0, oy, ox).reshape(nq, k0, k_cls)
      if not use_short:
        top, cand = t0, l0
      else:
        q = jax.lax.dynamic_slice(query, (oy + ry, ox + rx, 0),
                                  (bh, bw, c)).reshape(nq, c)
        keys = jax.lax.dynamic_slice(mem_feats, (0, oy, ox, 0),
                                     (context, wy, wx, c))
        klab = jax.lax.dynamic_slice(mem_labels, (0, oy, ox, 0),
                                     (context, wy, wx, k_cls))
        s = (q @ keys.reshape(context * nwin, c).T).reshape(
            nq, context, nwin)
        gy = oy - ry + jnp.arange(wy)
        gx = ox - rx + jnp.arange(wx)
        inside = (((gy >= 0) & (gy < h))[:, None] &
                  ((gx >= 0) & (gx < w))[None]).ravel()
        ok = win_mask & inside[None]  # [nq, nwin]
        s = jnp.where(ok[:, None, :], s, jnp.asarray(_MASKED, s.dtype))
        top1, idx1 = jax.lax.top_k(
            s.reshape(nq, context * nwin) / temperature, k1)
        l1 = klab.reshape(context * nwin, k_cls)[idx1]
        # The top-k of the union is the top-k of the two top-k lists.
        top, idx = jax.lax.top_k(jnp.concatenate([t0, top1], 1), topk)
        cand = jnp.take_along_axis(
            jnp.concatenate([l0, l1], 1), idx[..., None], 1)
      weights = jax.nn.softmax(top, axis=-1)
      return jnp.einsum("qk,qkc->qc", weights, cand)  # [nq, K]

    out = jax.lax.map(one_block, blocks, batch_size=per_step)
    out = out.reshape(nby, nbx, bh, bw, k_cls).transpose(0, 2, 1, 3, 4)
    return out.reshape(nby * bh, nbx * bw, k_cls)[:h, :w]

  def step(carry, t):
    mem_feats, mem_labels = carry
    frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
    query = pad_frame(frame)
    pred = predict(query, mem_feats, mem_labels)
    if use_short:
      slot = (t - 1) % context  # The oldest slot.
      mem_feats = jax.lax.dynamic_update_index_in_dim(
          mem_feats, query, slot, 0)
      mem_labels = jax.lax.dynamic_update_index_in_dim(
          mem_labels, pad_frame(pred), slot, 0)
    return (mem_feats, mem_labels), pred

  if use_short:
    init = (jnp.broadcast_to(pad_frame(feats[0]), (context, hp, wp, c)),
            jnp.broadcast_to(pad_frame(y0.reshape(h, w, k_cls)),
                             (context, hp, wp, k_cls)))
  else:
    init = (jnp.zeros((), dtype), jnp.zeros((), dtype))
  # Frames are read by index: no [T-1, h, w, C] copy as scan inputs.
  _, preds = jax.lax.scan(step, init, jnp.arange(1, t_len))
  return jnp.concatenate([y0.reshape(1, h, w, k_cls), preds])
