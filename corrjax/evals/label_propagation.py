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
_HIGHEST = jax.lax.Precision.HIGHEST  # f32 products on GPU/TPU too (no TF32).
IMPLS = ("auto", "blocked", "dense")


def _half_window(radius: float, size: int) -> int:
  """Largest integer offset d with |d| < radius, clipped to size - 1."""
  return min(max(int(math.ceil(radius)) - 1, 0), size - 1)


def _within(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
  """Cell offsets within the radius, as `MaskedAttention.make`.

  `code/utils/__init__.py:349-362`: float32 sqrt of the squared offset,
  strictly < radius.
  """
  d2 = (np.asarray(dy) ** 2 + np.asarray(dx) ** 2).astype(np.float32)
  return np.sqrt(d2) < np.float32(radius)


def _frame0_topk(q, f0, k0, temperature, chunk):
  """Top-k of frame 0's keys (never radius-restricted) for every query.

  Args:
    q: float [n, C] queries.
    f0: float [n0, C] frame 0's keys.
    k0: neighbours kept; when k0 > n0 the missing keys are -inf with index
      n0 .. k0 - 1 (zero labels in the caller's table).
    temperature: softmax temperature.
    chunk: query rows per matmul.

  Returns:
    (similarities / temperature [n, k0], int32 key indices [n, k0]).
  """
  n, c = q.shape
  n0 = f0.shape[0]
  extra = max(k0 - n0, 0)
  chunk = max(1, min(n, chunk))
  q = jnp.pad(q, ((0, (-n) % chunk), (0, 0))).reshape(-1, chunk, c)

  def one_chunk(qc):
    sim = jnp.dot(qc, f0.T, precision=_HIGHEST)
    sim = jnp.concatenate([sim, jnp.full((chunk, extra), -jnp.inf,
                                         sim.dtype)], 1)
    return jax.lax.top_k(sim / temperature, k0)

  top, idx = jax.lax.map(one_chunk, q)
  return top.reshape(-1, k0)[:n], idx.reshape(-1, k0)[:n]


def _softmax_sum(top, idx, table):
  """softmax(top) [n, k] weighted sum of table[idx] [n, k, K] -> [n, K]."""
  weights = jax.nn.softmax(top, axis=-1)
  return jnp.einsum("qk,qkc->qc", weights, table[idx], precision=_HIGHEST)


def _static_args(fn):
  return functools.partial(jax.jit, static_argnames=(
      "topk", "radius", "context", "temperature", "query_chunk", "block"))(fn)


@_static_args
def _propagate_blocked(feats, labels0, *, topk, radius, context, temperature,
                       query_chunk, block):
  """`propagate` with key blocks (CPU): see the module docstring."""
  t_len, h, w, c = feats.shape
  n, k_cls = h * w, labels0.shape[-1]
  dtype = feats.dtype
  f0 = feats[0].reshape(n, c)
  y0 = labels0.reshape(n, k_cls).astype(dtype)
  k0 = topk
  n0 = n + max(k0 - n, 0)  # Frame 0's rows of the label table.
  y0_ext = jnp.concatenate([y0, jnp.zeros((n0 - n, k_cls), dtype)])
  use_short = radius > 0 and context > 0

  if not use_short:
    def step0(_, t):
      frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
      top, idx = _frame0_topk(frame.reshape(n, c), f0, k0, temperature,
                              query_chunk)
      return None, _softmax_sum(top, idx, y0_ext).reshape(h, w, k_cls)

    _, preds = jax.lax.scan(step0, None, jnp.arange(1, t_len))
    return jnp.concatenate([y0.reshape(1, h, w, k_cls), preds])

  # Key blocks of by x bx cells; the bank holds whole blocks (zeros past
  # the frame, masked). The queries that can see a key block lie in its
  # window, the block grown by (ry, rx) on each side.
  by, bx = min(block, h), min(block, w)
  nky, nkx = -(-h // by), -(-w // bx)
  hb, wb = nky * by, nkx * bx
  ry, rx = _half_window(radius, h), _half_window(radius, w)
  wy, wx = by + 2 * ry, bx + 2 * rx
  nk, nwin = by * bx, wy * wx
  k1 = min(topk, context * nk)
  # Static tables: window cell (a, b) is the query at (a - ry, b - rx) from
  # the block origin; key cell (i, j) at (i, j).
  a, b = np.meshgrid(np.arange(wy) - ry, np.arange(wx) - rx, indexing="ij")
  i, j = np.meshgrid(np.arange(by), np.arange(bx), indexing="ij")
  near = _within(a.reshape(-1, 1) - i.reshape(1, -1),
                 b.reshape(-1, 1) - j.reshape(1, -1), radius)  # [nwin, nk]
  key_row = np.tile(i.ravel(), context)  # [context * nk]
  key_col = np.tile(j.ravel(), context)
  key_off = (n0 + np.repeat(np.arange(context), nk) * hb * wb +
             key_row * wb + key_col).astype(np.int32)
  # Block offsets (d, e) from a query block to a key block holding a key
  # within the radius of one of its cells.
  dy_max, dx_max = -(-ry // by), -(-rx // bx)
  offsets = [(d, e) for d in range(-dy_max, dy_max + 1)
             for e in range(-dx_max, dx_max + 1)
             if _within(d * by + i.reshape(-1, 1) - i.reshape(1, -1),
                        e * bx + j.reshape(-1, 1) - j.reshape(1, -1),
                        radius).any()]
  pad_y, pad_x = dy_max * by - ry, dx_max * bx - rx
  blocks = np.stack(np.meshgrid(np.arange(nky), np.arange(nkx),
                                indexing="ij"), -1).reshape(-1, 2)
  per_step = max(1, query_chunk // nk)

  def window_topk(qpad, bank_f):
    """Per key block: top-k of its keys for each query of its window.

    qpad [hb + 2ry, wb + 2rx, C], bank_f [L, hb, wb, C] ->
    (sims / T, table indices), each [nky, nkx, wy, wx, k1].
    """
    def one_block(yx):
      oy, ox = yx[0] * by, yx[1] * bx
      q = jax.lax.dynamic_slice(qpad, (oy, ox, 0), (wy, wx, c))
      keys = jax.lax.dynamic_slice(bank_f, (0, oy, ox, 0),
                                   (context, by, bx, c))
      s = jnp.dot(q.reshape(nwin, c), keys.reshape(context * nk, c).T,
                  precision=_HIGHEST).reshape(nwin, context, nk)
      inside = ((oy + jnp.asarray(i.ravel()) < h) &
                (ox + jnp.asarray(j.ravel()) < w))
      ok = jnp.asarray(near) & inside[None]
      s = jnp.where(ok[:, None, :], s, jnp.asarray(_MASKED, s.dtype))
      top, idx = jax.lax.top_k(s.reshape(nwin, context * nk) / temperature,
                               k1)
      gidx = jnp.asarray(key_off)[idx] + oy * wb + ox
      return top.reshape(wy, wx, k1), gidx.reshape(wy, wx, k1)

    top, idx = jax.lax.map(one_block, jnp.asarray(blocks),
                           batch_size=per_step)
    return (top.reshape(nky, nkx, wy, wx, k1),
            idx.reshape(nky, nkx, wy, wx, k1))

  def gather_blocks(x, fill):
    """[nky, nkx, wy, wx, k1] per key block -> [h, w, len(offsets) * k1].

    Query cell (qy * by + iy, ...) sits in the window of key block
    qy + d at row iy - d * by + ry: after padding the window rows by pad_y,
    row block dy_max - d, row iy.
    """
    x = jnp.pad(x, ((0, 0), (0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)),
                constant_values=fill)
    x = x.reshape(nky, nkx, 2 * dy_max + 1, by, 2 * dx_max + 1, bx, k1)
    parts = []
    for d, e in offsets:
      part = x[:, :, dy_max - d, :, dx_max - e]  # [nky, nkx, by, bx, k1]
      part = jnp.pad(part, ((dy_max, dy_max), (dx_max, dx_max), (0, 0),
                            (0, 0), (0, 0)), constant_values=fill)
      parts.append(part[dy_max + d:dy_max + d + nky,
                        dx_max + e:dx_max + e + nkx])
    x = jnp.concatenate(parts, -1).transpose(0, 2, 1, 3, 4)
    return x.reshape(hb, wb, -1)[:h, :w]

  def pad_frame(x):
    return jnp.pad(x, ((0, hb - h), (0, wb - w), (0, 0)))

  def step(carry, t):
    bank_f, bank_y = carry
    frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
    top0, idx0 = _frame0_topk(frame.reshape(n, c), f0, k0, temperature,
                              query_chunk)
    qpad = jnp.pad(frame, ((ry, hb - h + ry), (rx, wb - w + rx), (0, 0)))
    top1, idx1 = window_topk(qpad, bank_f)
    top1 = gather_blocks(top1, -jnp.inf).reshape(n, -1)
    idx1 = gather_blocks(idx1, 0).reshape(n, -1)
    # The top-k of a union is the top-k of the parts' top-ks.
    top, sel = jax.lax.top_k(jnp.concatenate([top0, top1], 1), topk)
    idx = jnp.take_along_axis(jnp.concatenate([idx0, idx1], 1), sel, 1)
    table = jnp.concatenate([y0_ext, bank_y.reshape(-1, k_cls)])
    pred = _softmax_sum(top, idx, table).reshape(h, w, k_cls)
    slot = (t - 1) % context  # The oldest slot.
    bank_f = jax.lax.dynamic_update_index_in_dim(bank_f, pad_frame(frame),
                                                 slot, 0)
    bank_y = jax.lax.dynamic_update_index_in_dim(bank_y, pad_frame(pred),
                                                 slot, 0)
    return (bank_f, bank_y), pred

  init = (jnp.broadcast_to(pad_frame(feats[0]), (context, hb, wb, c)),
          jnp.broadcast_to(pad_frame(y0.reshape(h, w, k_cls)),
                           (context, hb, wb, k_cls)))
  # Frames are read by index: no [T-1, h, w, C] copy as scan inputs.
  _, preds = jax.lax.scan(step, init, jnp.arange(1, t_len))
  return jnp.concatenate([y0.reshape(1, h, w, k_cls), preds])


@_static_args
def _propagate_dense(feats, labels0, *, topk, radius, context, temperature,
                     query_chunk, block=None):
  """`propagate` with dense per-frame similarities (GPU): one matmul of a
  query chunk against frame 0 and the whole bank, the radius as a mask."""
  del block
  t_len, h, w, c = feats.shape
  n, k_cls = h * w, labels0.shape[-1]
  dtype = feats.dtype
  f0 = feats[0].reshape(n, c)
  y0 = labels0.reshape(n, k_cls).astype(dtype)
  use_short = radius > 0 and context > 0
  n_keys = n * (1 + (context if use_short else 0))
  extra = max(topk - n_keys, 0)
  cells = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"),
                   -1).reshape(n, 2)
  chunk = max(1, min(n, query_chunk))
  n_pad = -(-n // chunk) * chunk
  q_cells = jnp.asarray(np.pad(cells, ((0, n_pad - n), (0, 0))))
  k_cells = jnp.asarray(cells)

  def predict(q, bank_f, table):
    q = jnp.pad(q, ((0, n_pad - n), (0, 0))).reshape(-1, chunk, c)

    def one_chunk(args):
      qc, qxy = args
      s = [jnp.dot(qc, f0.T, precision=_HIGHEST)]
      if use_short:
        s1 = jnp.einsum("qc,lkc->qlk", qc, bank_f, precision=_HIGHEST)
        d = qxy[:, None, :] - k_cells[None]
        d2 = (d[..., 0] ** 2 + d[..., 1] ** 2).astype(jnp.float32)
        near = jnp.sqrt(d2) < jnp.float32(radius)
        s.append(jnp.where(near[:, None], s1,
                           jnp.asarray(_MASKED, s1.dtype)).reshape(chunk, -1))
      s.append(jnp.full((chunk, extra), -jnp.inf, dtype))
      top, idx = jax.lax.top_k(jnp.concatenate(s, 1) / temperature, topk)
      return _softmax_sum(top, idx, table)

    out = jax.lax.map(one_chunk, (q, q_cells.reshape(-1, chunk, 2)))
    return out.reshape(n_pad, k_cls)[:n]

  def step(carry, t):
    bank_f, bank_y = carry
    frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
    frame = frame.reshape(n, c)
    table = jnp.concatenate([y0, bank_y.reshape(-1, k_cls),
                             jnp.zeros((extra, k_cls), dtype)])
    pred = predict(frame, bank_f, table)
    if use_short:
      slot = (t - 1) % context
      bank_f = jax.lax.dynamic_update_index_in_dim(bank_f, frame, slot, 0)
      bank_y = jax.lax.dynamic_update_index_in_dim(bank_y, pred, slot, 0)
    return (bank_f, bank_y), pred.reshape(h, w, k_cls)

  n_slots = context if use_short else 0
  init = (jnp.broadcast_to(f0, (n_slots, n, c)),
          jnp.broadcast_to(y0, (n_slots, n, k_cls)))
  _, preds = jax.lax.scan(step, init, jnp.arange(1, t_len))
  return jnp.concatenate([y0.reshape(1, h, w, k_cls), preds])


def dense_chunk(shape, context: int, radius: float, device=None,
                memory_fraction: float = 0.4):
  """Query rows per step of the dense layout that fit the device, or 0.

  The dense step holds about 3 float32 [chunk, (context + 1) * h * w]
  buffers (similarities, masked copy, concatenation). Returns the largest
  chunk (at most h * w) whose buffers take at most `memory_fraction` of the
  device's free memory; 0 when that is under 256 rows, when the device does
  not report its memory, or on CPU (where the blocked layout does far fewer
  FLOPs).
  """
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return 0
  stats = device.memory_stats() or {}
  if "bytes_limit" not in stats:
    return 0
  free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  _, h, w, c = shape
  n = h * w
  n_keys = n * (1 + (context if radius > 0 else 0))
  bank = 4 * n * (context + 1) * (c + 16)
  per_row = 3 * 4 * n_keys
  chunk = int((memory_fraction * free - bank) // per_row)
  if chunk < min(256, n):
    return 0
  return min(chunk, n)


def propagate(feats: jax.Array, labels0: jax.Array, *, topk: int,
              radius: float, context: int, temperature: float,
              query_chunk: int = 256, block: int = 4,
              impl: str = "auto") -> jax.Array:
  """Propagates frame 0's labels through a video.

  Args:
    feats: float [T, h, w, C], one L2-normalised vector per cell.
    labels0: float [h, w, K], frame 0's labels at feature resolution.
    topk: neighbours per query cell.
    radius: spatial radius in feature cells for the preceding frames (keys at
      distance < radius; <= 0: frame 0 only).
    context: number of preceding frames used as keys.
    temperature: softmax temperature.
    query_chunk: query cells per step: frame 0's similarities are computed
      for this many queries at once, and the blocked layout handles
      query_chunk // block**2 key blocks per step; in the dense layout, the
      query rows per step ("auto" picks them from the free device memory).
    block: key block side in cells (blocked layout).
    impl: "blocked" (local key blocks, the fewest FLOPs: CPU), "dense" (all
      keys of a frame in a few large matmuls, the radius as a mask:
      accelerators) or "auto": dense on a GPU/TPU when `dense_chunk` finds
      memory for it, else blocked. Both give the reference's outputs.

  Returns:
    float [T, h, w, K] soft labels; index 0 is `labels0`.
  """
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  kw = dict(topk=topk, radius=radius, context=context,
            temperature=temperature, query_chunk=query_chunk, block=block)
  if impl == "auto":
    chunk = dense_chunk(feats.shape, context, radius)
    impl = "dense" if chunk else "blocked"
    if chunk:
      kw["query_chunk"] = chunk
  if impl == "dense":
    return _propagate_dense(feats, labels0, **kw)
  return _propagate_blocked(feats, labels0, **kw)
