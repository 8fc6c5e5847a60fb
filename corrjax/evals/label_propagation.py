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

Two layouts, both equal to the reference (`propagate(impl=...)`):

"blocked" (CPU; the fewest FLOPs and bytes). Key cells are tiled into key
blocks of `block` x `block` cells (default 4). The queries that can see a
key block within the radius lie in its window, the block grown by R =
ceil(radius) - 1 cells on each side (the largest integer offset < radius),
less the corners that are out of reach of every key of the block (584 of
26 x 26 cells at block 4, radius 12). The gathered side is the query frame
(one frame, each cell copied ~36x), not the `context` bank frames (each
cell copied ~14x in each of 20 frames, as a query-block layout needs).
Per target frame:
* Frame 0 (never radius-restricted): similarities of `query_chunk` queries
  at a time against all of frame 0 (one matmul each), reduced at once to
  their top-k.
* Bank: per key block, one matmul of its window queries against its keys
  in all `context` slots; masked like the reference (-1e10 outside the
  strict radius or the frame); per (query, block, slot) group of
  block**2 keys, the group maximum.
* Top-k by group maxima: the top-k of a set lies in its top-k groups by
  group maximum, so each query takes the k best maxima of its groups
  (static index table: which groups cover which query), then the k best
  of those groups' keys. XLA's CPU top-k costs about 1 us per row plus
  ~1.6 ns per element while maxima are nearly free, so this replaces a
  top-k over every (query, block) pair (or one over all 20 x 900 window
  keys of a query) by two small ones per query. Frame 0 uses the same
  trick with groups of 32 consecutive keys.
* The top-k of a union is the top-k of the parts' top-ks: one top-k over
  [frame-0 top-k, bank top-k], softmax of the similarities / temperature,
  weighted sum of the keys' soft labels.
* The bank is a ring buffer of `context` slots (features and soft labels,
  padded to whole blocks), initialised with copies of frame 0; frames run
  in a `lax.scan`; key blocks in at most 32 unrolled steps of
  `query_chunk // block**2` blocks (a `lax.map` would copy the bank and
  zero-fill its outputs every frame). Peak memory is the bank plus the
  window similarities of one frame (4 B * 20 * 16 * 584 * 405 = 0.3 GB at
  DAVIS 480p), independent of T.

"dense" (accelerators): for each chunk of queries, one matmul against frame
0 and one against all bank slots, the radius as a mask from cell
coordinates, one joint top-k over (context + 1) * h * w candidates, as the
reference. Large matmuls and a dense top-k suit a GPU; on CPU it does ~7x
the blocked FLOPs. "auto" picks dense on a GPU/TPU when `dense_chunk` finds
device memory for at least 256 query rows, blocked otherwise.

All matmuls run at `Precision.HIGHEST` (no TF32 on GPUs).

Ties: the layouts order equal candidates as [frame 0 by key index, bank
slots] where the reference orders [frame 0, oldest ... newest]. Exact ties
among the copies of a frame-0 key do not matter (identical labels); at an
exact tie between two frame-0 keys, one with copies in the bank, both
layouts keep frame 0's keys first, as the reference does on small integer
features (`test_exact_ties_keep_frame_zero_keys_first`). Similarities
themselves are float32 sums in another order than torch's (differences
~1e-7), so two keys with different labels whose exact similarities differ
by less than about their rounding at the top-k boundary can be ranked
either way; the output then moves by that key's weight. No float32 order is
right there: the reference itself moves at such cells when only the order
of its sums changes (channels reversed: 3 of the benchmark's 19,260 query
cells, by up to 0.1), and on those inputs the blocked layout equals the
reference run in float64 (8.3e-7) where the reference's float32 run does
not (0.085 at one cell; `benchmarks/propagation_ties.py`,
docs/benchmarks.md "Ties").
Otherwise outputs agree with the reference to ~1e-6.
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


def _frame0_topk(q, f0, k0, temperature, chunk, n0, group):
  """Top-k of frame 0's keys (never radius-restricted) for every query.

  The top-k of a set lies in its top-k groups by group maximum: per query,
  the k best maxima of groups of `group` consecutive keys, then the k best
  keys of those groups (XLA's CPU top-k costs about 1 us per row plus 1.6 ns
  per element; maxima are nearly free).

  Args:
    q: float [n, C] queries.
    f0: float [m, C] frame 0's keys.
    k0: neighbours kept.
    temperature: softmax temperature.
    chunk: query rows per matmul.
    n0: keys after padding with -inf (index m .. n0 - 1, zero labels in
      the caller's table): >= max(m, k0), a multiple of `group`.
    group: keys per group.

  Returns:
    (similarities / temperature [n, k0], int32 key indices [n, k0]).
  """
  n, c = q.shape
  m = f0.shape[0]
  chunk = max(1, min(n, chunk))
  q = jnp.pad(q, ((0, (-n) % chunk), (0, 0))).reshape(-1, chunk, c)
  n_groups = n0 // group
  kg = min(k0, n_groups)

  def one_chunk(qc):
    sim = jnp.dot(qc, f0.T, precision=_HIGHEST) / temperature
    sim = jnp.concatenate([sim, jnp.full((chunk, n0 - m), -jnp.inf,
                                         sim.dtype)], 1)
    sim = sim.reshape(chunk, n_groups, group)
    _, g = jax.lax.top_k(sim.max(-1), kg)
    # Groups in key order: among equal similarities the lowest key index is
    # kept, as a top-k over all of frame 0 would.
    g = jnp.sort(g, axis=1)
    vals = jnp.take_along_axis(sim, g[..., None], 1).reshape(chunk, -1)
    top, idx = jax.lax.top_k(vals, k0)
    return top, jnp.take_along_axis(g, idx // group, 1) * group + idx % group

  top, idx = jax.lax.map(one_chunk, q)
  return top.reshape(-1, k0)[:n], idx.reshape(-1, k0)[:n]


def _softmax_sum(top, idx, table):
  """softmax(top) [n, k] weighted sum of table[idx] [n, k, K] -> [n, K]."""
  weights = jax.nn.softmax(top, axis=-1)
  return jnp.einsum("qk,qkc->qc", weights, table[idx], precision=_HIGHEST)


def _static_args(fn):
  return functools.partial(jax.jit, static_argnames=(
      "topk", "radius", "context", "temperature", "query_chunk", "block",
      "group0"))(fn)


class _Layout:
  """Static shapes and index tables of the blocked layout.

  Key blocks of by x bx cells; the bank holds whole blocks (zeros past the
  frame, masked). The queries that can see a key block lie in its window,
  the block grown by (ry, rx) cells on each side: window cell (a, b) is the
  query at (a - ry, b - rx) from the block origin. A group is one key
  block in one bank slot: its `nk` similarities to one window query are one
  row of the window similarities.
  """

  def __init__(self, h, w, radius, context, block):
    self.h, self.w, self.context = h, w, context
    self.by, self.bx = by, bx = min(block, h), min(block, w)
    self.nky, self.nkx = -(-h // by), -(-w // bx)
    self.hb, self.wb = self.nky * by, self.nkx * bx
    self.ry, self.rx = ry, rx = _half_window(radius, h), _half_window(radius, w)
    self.wy, self.wx = by + 2 * ry, bx + 2 * rx
    self.nk, self.nwin = by * bx, self.wy * self.wx
    a, b = np.meshgrid(np.arange(self.wy) - ry, np.arange(self.wx) - rx,
                       indexing="ij")
    i, j = np.meshgrid(np.arange(by), np.arange(bx), indexing="ij")
    self.key_y, self.key_x = i.ravel(), j.ravel()  # In-block key cells.
    self.near = _within(a.reshape(-1, 1) - i.reshape(1, -1),
                        b.reshape(-1, 1) - j.reshape(1, -1), radius)
    # Window cells within the radius of some key of the block (the corners
    # are not): only these queries are multiplied.
    self.rows = np.flatnonzero(self.near.any(1)).astype(np.int32)
    self.nrows = len(self.rows)
    self.row_of = np.zeros(self.nwin, np.int32)  # Window cell -> row.
    self.row_of[self.rows] = np.arange(self.nrows)
    # Block offsets (d, e) from a query block to a key block holding a key
    # within the radius of one of its cells.
    self.dy_max, self.dx_max = -(-ry // by), -(-rx // bx)
    self.offsets = [
        (d, e) for d in range(-self.dy_max, self.dy_max + 1)
        for e in range(-self.dx_max, self.dx_max + 1)
        if _within(d * by + i.reshape(-1, 1) - i.reshape(1, -1),
                   e * bx + j.reshape(-1, 1) - j.reshape(1, -1),
                   radius).any()]
    self.blocks = np.stack(np.meshgrid(np.arange(self.nky),
                                       np.arange(self.nkx), indexing="ij"),
                           -1).reshape(-1, 2)
    self.n_groups = len(self.offsets) * context  # Per query.

  def gather_blocks(self, x, fill, xp=jnp):
    """[nky, nkx, wy, wx, m] per key block -> [h * w, len(offsets) * m].

    Query cell (qy * by + iy, ...) sits in the window of key block qy + d
    at row iy - d * by + ry: after padding the window rows by
    dy_max * by - ry, in row block dy_max - d, row iy.
    """
    dy, dx, by, bx = self.dy_max, self.dx_max, self.by, self.bx
    m = x.shape[-1]
    pad_y, pad_x = dy * by - self.ry, dx * bx - self.rx
    x = xp.pad(x, ((0, 0), (0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)),
               constant_values=fill)
    x = x.reshape(self.nky, self.nkx, 2 * dy + 1, by, 2 * dx + 1, bx, m)
    parts = []
    for d, e in self.offsets:
      part = x[:, :, dy - d, :, dx - e]  # [nky, nkx, by, bx, m]
      part = xp.pad(part, ((dy, dy), (dx, dx), (0, 0), (0, 0), (0, 0)),
                    constant_values=fill)
      parts.append(part[dy + d:dy + d + self.nky, dx + e:dx + e + self.nkx])
    x = xp.concatenate(parts, -1).transpose(0, 2, 1, 3, 4)
    return x.reshape(self.hb, self.wb, -1)[:self.h, :self.w].reshape(
        self.h * self.w, -1)

  def query_groups(self):
    """int32 [h * w, n_groups]: each query's groups (their sims rows)."""
    ids = np.arange(self.nky * self.nkx * self.nwin * self.context,
                    dtype=np.int32)
    ids = ids.reshape(self.nky, self.nkx, self.wy, self.wx, self.context)
    return self.gather_blocks(ids, 0, xp=np)

  def group_keys(self, gid, n0):
    """Label-table index of the first key of groups `gid` (int32)."""
    block, rest = jnp.divmod(gid, self.nwin * self.context)
    slot = rest % self.context
    return (n0 + slot * self.hb * self.wb +
            (block // self.nkx) * self.by * self.wb +
            (block % self.nkx) * self.bx)


def _window_sims(lay, qpad, bank_f, per_step):
  """Per key block: similarities of its keys to the queries of its window.

  Args:
    lay: the `_Layout`.
    qpad: float [hb + 2ry, wb + 2rx, C], the query frame at (ry, rx).
    bank_f: float [L, hb, wb, C], the bank.
    per_step: key blocks per matmul.

  Returns:
    (raw similarities [nky * nkx * nrows * L, nk], unmasked, and the
    maxima of their masked groups [nky, nkx, wy, wx, L]: -1e10 where all of
    a group is masked, -inf for window cells outside `lay.rows`).
  """
  c = qpad.shape[-1]
  ctx, nk, nwin = lay.context, lay.nk, lay.nwin
  near = jnp.asarray(lay.near)
  key_y, key_x = jnp.asarray(lay.key_y), jnp.asarray(lay.key_x)

  rows = jnp.asarray(lay.rows)
  # Window cell -> its row of the block's maxima, or the -inf column.
  cells = np.full(nwin, lay.nrows, np.int32)
  cells[lay.rows] = np.arange(lay.nrows)

  def one_block(yx):
    oy, ox = yx[0] * lay.by, yx[1] * lay.bx
    q = jax.lax.dynamic_slice(qpad, (oy, ox, 0), (lay.wy, lay.wx, c))
    keys = jax.lax.dynamic_slice(bank_f, (0, oy, ox, 0),
                                 (ctx, lay.by, lay.bx, c))
    s = jnp.dot(q.reshape(nwin, c)[rows], keys.reshape(ctx * nk, c).T,
                precision=_HIGHEST).reshape(lay.nrows, ctx, nk)
    ok = near[rows] & ((oy + key_y < lay.h) & (ox + key_x < lay.w))[None]
    masked = jnp.where(ok[:, None, :], s, jnp.asarray(_MASKED, s.dtype))
    # An elementwise chain, which XLA fuses with the mask into one pass
    # (a reduce is handed to a library kernel after a masked copy).
    gmax = functools.reduce(jnp.maximum, [masked[..., k] for k in range(nk)])
    gmax = jnp.concatenate([gmax, jnp.full((1, ctx), -jnp.inf, s.dtype)])
    return s, gmax[cells]

  # An unrolled loop over chunks of blocks, not `lax.map`: a while loop
  # would copy the bank each frame (it is updated after it is read) and
  # zero-fill its stacked outputs each frame.
  blocks = jnp.asarray(lay.blocks)
  sims, gmax = zip(*[jax.vmap(one_block)(blocks[i:i + per_step])
                     for i in range(0, len(lay.blocks), per_step)])
  return (jnp.concatenate(sims).reshape(-1, nk),
          jnp.concatenate(gmax).reshape(lay.nky, lay.nkx, lay.wy, lay.wx,
                                        ctx))


def _window_topk(lay, sims, gmax, groups, k1, n0, temperature):
  """Top-k1 of every query's admissible bank keys.

  The top-k of a set lies in its top-k groups by group maximum: per query,
  the k best of its groups' maxima, then the k best keys of those groups,
  masked as the reference (-1e10) and divided by the temperature (which
  keeps their order).

  Args:
    lay: the `_Layout`.
    sims, gmax: from `_window_sims`.
    groups: int32 [n, n_groups], `lay.query_groups()`.
    k1: neighbours kept.
    n0: label-table index of the bank's first key.
    temperature: softmax temperature.

  Returns:
    (sims / T [n, k1], label-table indices [n, k1]).
  """
  n = groups.shape[0]
  kg = min(k1, lay.n_groups)
  gmax = lay.gather_blocks(gmax, -jnp.inf)  # [n, n_groups]
  top_g, sel = jax.lax.top_k(gmax, kg)
  # Groups in index order (ties: the lower block, cell, slot first).
  sel = jnp.sort(sel, axis=1)
  top_g = jnp.take_along_axis(gmax, sel, 1)
  gid = jnp.take_along_axis(groups, sel, 1)  # [n, kg]
  block, rest = jnp.divmod(gid, lay.nwin * lay.context)
  key_y = (block // lay.nkx)[..., None] * lay.by + jnp.asarray(lay.key_y)
  key_x = (block % lay.nkx)[..., None] * lay.bx + jnp.asarray(lay.key_x)
  ok = (jnp.asarray(lay.near)[rest // lay.context] &
        (key_y < lay.h) & (key_x < lay.w))  # [n, kg, nk]
  cell, slot = jnp.divmod(rest, lay.context)
  row = (block * lay.nrows + jnp.asarray(lay.row_of)[cell]) * lay.context
  vals = jnp.where(ok, sims[row + slot], jnp.asarray(_MASKED, sims.dtype))
  vals = jnp.where(top_g[..., None] == -jnp.inf, -jnp.inf, vals)
  top, idx = jax.lax.top_k(vals.reshape(n, kg * lay.nk), k1)
  g, key = jnp.divmod(idx, lay.nk)
  gid = jnp.take_along_axis(gid, g, 1)
  in_block = (jnp.asarray(lay.key_y) * lay.wb + jnp.asarray(lay.key_x))
  return top / temperature, lay.group_keys(gid, n0) + in_block[key]


@functools.lru_cache(maxsize=8)
def _query_groups(h, w, radius, context, block):
  return _Layout(h, w, radius, context, block).query_groups()


@_static_args
def _propagate_blocked(feats, labels0, groups, *, topk, radius, context,
                       temperature, query_chunk, block, group0=32):
  """`propagate` with key blocks (CPU): see the module docstring."""
  t_len, h, w, c = feats.shape
  n, k_cls = h * w, labels0.shape[-1]
  dtype = feats.dtype
  f0 = feats[0].reshape(n, c)
  y0 = labels0.reshape(n, k_cls).astype(dtype)
  k0 = topk
  n0 = -(-max(n, k0) // group0) * group0  # Frame 0's rows of the table.
  y0_ext = jnp.concatenate([y0, jnp.zeros((n0 - n, k_cls), dtype)])
  use_short = radius > 0 and context > 0

  if not use_short:
    def step0(_, t):
      frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
      top, idx = _frame0_topk(frame.reshape(n, c), f0, k0, temperature,
                              query_chunk, n0, group0)
      return None, _softmax_sum(top, idx, y0_ext).reshape(h, w, k_cls)

    _, preds = jax.lax.scan(step0, None, jnp.arange(1, t_len))
    return jnp.concatenate([y0.reshape(1, h, w, k_cls), preds])

  lay = _Layout(h, w, radius, context, block)
  hb, wb, ry, rx = lay.hb, lay.wb, lay.ry, lay.rx
  k1 = min(topk, lay.n_groups * lay.nk)  # Window keys kept per query.
  # Key blocks per matmul; at most 32 unrolled steps (compile time).
  per_step = max(1, query_chunk // lay.nk, -(-len(lay.blocks) // 32))

  def pad_frame(x):
    return jnp.pad(x, ((0, hb - h), (0, wb - w), (0, 0)))

  def step(carry, t):
    bank_f, bank_y = carry
    frame = jax.lax.dynamic_index_in_dim(feats, t, keepdims=False)
    top0, idx0 = _frame0_topk(frame.reshape(n, c), f0, k0, temperature,
                              query_chunk, n0, group0)
    qpad = jnp.pad(frame, ((ry, hb - h + ry), (rx, wb - w + rx), (0, 0)))
    sims, gmax = _window_sims(lay, qpad, bank_f, per_step)
    top1, idx1 = _window_topk(lay, sims, gmax, groups, k1, n0, temperature)
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
                     query_chunk, block=None, group0=None):
  """`propagate` with dense per-frame similarities (GPU): one matmul of a
  query chunk against frame 0 and the whole bank, the radius as a mask."""
  del block, group0
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
  _, h, w, _ = feats.shape
  groups = None
  if radius > 0 and context > 0:
    groups = _query_groups(h, w, radius, context, block)
  return _propagate_blocked(feats, labels0, groups, **kw)
