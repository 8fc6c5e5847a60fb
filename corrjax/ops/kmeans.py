"""Space-time k-means for Mask-VOS pseudo masks (paper §3.1 Step 1, Eq. 4).

Mask-VOS (Li et al., CVPR 2023) clusters all pixels of a training video into
M = 5 clusters on the visual encoder's embedding concatenated with a 3D
sinusoidal position encoding, runs 100 EM steps, drops clusters holding
more than 40% of the video's pixels (§3.3 "Training") and uses the rest as
pseudo objects. The released code departs from this (sklearn KMeans(7) on
every 8th frame, no position encoding, no drop; `gen_mask.py` L110-177, see
reference/liir_maskvos.md §2.2); this module follows the paper.

Conventions. One video's pixels are rows of `x` float32 [N, D], N = T*H*W in
(t, y, x) row-major order; videos are batched as [V, N, D] with an optional
float `weights` [V, N] (1 for a real pixel, 0 for padding, so videos of
different lengths share one compiled call). Eq. 4 writes the Euclidean
distance; k-means (and sklearn) minimise its square, as here: the inertia
is sum_i w_i ||x_i - c_{s_i}||^2.

Assignment is exact float32: argmin_k ||c_k||^2 - 2 <x_i, c_k> with the dot
products at HIGHEST precision, the formula sklearn's Lloyd uses
(`_k_means_lloyd`), so both pick the same cluster except at float ties.
Each EM step reads the pixels once, in cache-sized row chunks that are
assigned and summed together (`_pass`).
A cluster left empty keeps its centre (sklearn moves it to a far point).
"""

import functools
import math

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def position_encoding_3d(num_frames: int, height: int, width: int,
                         dim: int, *, scale: float = 1.0) -> jax.Array:
  """3D sinusoidal position encoding of a T x H x W grid (paper §3.1, [64,65]).

  The paper gives no formula; this is the usual separable extension of the
  Transformer encoding (Vaswani et al. 2017; its 2D form in Wang & Liu 2019,
  refs [64, 65]). Each axis a in (t, y, x) gets c = 2 * ceil(dim / 6)
  channels, F = c / 2 frequencies w_j = 10000^(-2j / c), j = 0 .. F-1:

    pe_a(p) = [sin(p w_0), cos(p w_0), ..., sin(p w_{F-1}), cos(p w_{F-1})]

  with p the integer frame, row or column index; pe = [pe_t, pe_y, pe_x]
  truncated to `dim` channels, then multiplied by scale / sqrt(3F) so that
  ||pe|| = scale for every cell when dim is a multiple of 6 (each sin/cos
  pair has unit norm). The scale is ours: the paper does not say how the PE
  is weighted against the L2-normalised (unit-norm) key.

  Args:
    num_frames, height, width: grid size (T, H, W).
    dim: number of channels.
    scale: norm of each cell's encoding (see above).

  Returns:
    float32 [T, H, W, dim].
  """
  freqs = -(-dim // 6)
  c = 2 * freqs
  w = 10000.0 ** (-2.0 * jnp.arange(freqs, dtype=jnp.float32) / c)

  def axis(n):
    p = jnp.arange(n, dtype=jnp.float32)[:, None] * w
    return jnp.stack([jnp.sin(p), jnp.cos(p)], axis=-1).reshape(n, c)

  t, y, x = axis(num_frames), axis(height), axis(width)
  shape = (num_frames, height, width, c)
  pe = jnp.concatenate([
      jnp.broadcast_to(t[:, None, None], shape),
      jnp.broadcast_to(y[None, :, None], shape),
      jnp.broadcast_to(x[None, None, :], shape)], axis=-1)[..., :dim]
  return pe * (scale / math.sqrt(3 * freqs))


def with_position_encoding(features: jax.Array, dim: int, *,
                           scale: float = 1.0) -> jax.Array:
  """Concatenates the 3D PE to a video's features.

  Args:
    features: float [..., T, H, W, D] (e.g. E's L2-normalised keys).
    dim: PE channels.
    scale: PE norm (see `position_encoding_3d`).

  Returns:
    float32 [..., T, H, W, D + dim].
  """
  t, h, w = features.shape[-4:-1]
  pe = position_encoding_3d(t, h, w, dim, scale=scale)
  pe = jnp.broadcast_to(pe, features.shape[:-1] + (dim,))
  return jnp.concatenate([features.astype(jnp.float32), pe], axis=-1)


def _scores(x: jax.Array, centers: jax.Array) -> jax.Array:
  """||c_k||^2 - 2 <x_i, c_k>: [N, K] (||x_i||^2 omitted, same argmin)."""
  dots = jnp.dot(x, centers.T, precision=_HIGHEST)
  return jnp.sum(centers * centers, axis=-1) - 2.0 * dots


def assign(x: jax.Array, centers: jax.Array) -> jax.Array:
  """Nearest centre of each point: int32 [N] for x [N, D], centers [K, D]."""
  return jnp.argmin(_scores(x, centers), axis=-1).astype(jnp.int32)


def sq_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
  """||x_i - c_k||^2 >= 0: float32 [N, K]."""
  x_sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return jnp.maximum(x_sq + _scores(x, centers), 0.0)


def kmeans_plus_plus(rng: jax.Array, x: jax.Array, num_clusters: int,
                     weights: jax.Array | None = None,
                     num_trials: int | None = None) -> jax.Array:
  """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; as sklearn).

  The first centre is a point drawn with probability proportional to its
  weight; each next one is the best, by resulting potential sum_i w_i
  min_k d_ik^2, of `num_trials` candidates drawn proportional to w_i
  min_k d_ik^2 (sklearn's default 2 + floor(ln K) trials). Same algorithm
  as sklearn's `_kmeans_plusplus`, not the same random stream.

  Args:
    rng: PRNG key.
    x: float32 [N, D] points.
    num_clusters: K.
    weights: optional float [N] (0 = padding, never drawn).
    num_trials: candidates per step.

  Returns:
    float32 [K, D] initial centres.
  """
  n = x.shape[0]
  if weights is None:
    weights = jnp.ones((n,), jnp.float32)
  if num_trials is None:
    num_trials = 2 + int(math.log(num_clusters))
  first_rng, rng = jax.random.split(rng)
  first = jax.random.choice(first_rng, n, p=weights / weights.sum())
  centers = jnp.zeros((num_clusters, x.shape[1]), jnp.float32)
  centers = centers.at[0].set(x[first])
  closest = sq_distances(x, x[first][None])[:, 0]

  def step(k, carry):
    centers, closest = carry
    p = weights * closest
    # Degenerate case (all points on chosen centres): draw by weight.
    p = jnp.where(p.sum() > 0, p, weights)
    cand = jax.random.choice(jax.random.fold_in(rng, k), n, (num_trials,),
                             p=p / p.sum())
    d = jnp.minimum(closest[:, None], sq_distances(x, x[cand]))  # [N, L]
    best = jnp.argmin(jnp.sum(weights[:, None] * d, axis=0))
    return centers.at[k].set(x[cand[best]]), d[:, best]

  centers, _ = jax.lax.fori_loop(1, num_clusters, step, (centers, closest))
  return centers


def _pass(x_chunks: jax.Array, w_chunks: jax.Array, centers: jax.Array):
  """E-step and the M-step's sums in one pass over row chunks of x.

  Each [chunk, D] block is assigned and summed while it is in cache, so x
  is read once per EM step (as sklearn's chunked Lloyd does).

  Args:
    x_chunks: float32 [C, chunk, D]; w_chunks: float32 [C, chunk].
    centers: float32 [K, D].

  Returns:
    (labels int32 [C * chunk] = assign(x, centers), per-cluster weighted
    sums [K, D] and weights [K] of those labels).
  """
  k = centers.shape[0]
  sq = jnp.sum(centers * centers, axis=-1)

  def chunk(acc, block):
    xb, wb = block
    dots = jnp.dot(xb, centers.T, precision=_HIGHEST)
    labels = jnp.argmin(sq - 2.0 * dots, axis=-1).astype(jnp.int32)
    onehot = jax.nn.one_hot(labels, k, dtype=xb.dtype) * wb[:, None]
    return (acc[0] + jnp.dot(onehot.T, xb, precision=_HIGHEST),
            acc[1] + onehot.sum(axis=0)), labels

  init = (jnp.zeros_like(centers), jnp.zeros((k,), centers.dtype))
  (sums, counts), labels = jax.lax.scan(chunk, init, (x_chunks, w_chunks))
  return labels.reshape(-1), sums, counts


def lloyd(x: jax.Array, centers: jax.Array, num_steps: int,
          weights: jax.Array | None = None,
          chunk: int = 2048) -> dict[str, jax.Array]:
  """`num_steps` EM (Lloyd) steps from `centers`, one video.

  Each step moves each centre to the weighted mean of its points (an empty
  cluster keeps its centre), then assigns every point to its nearest
  centre. The returned labels are the assignment to the returned (final)
  centres, like sklearn's `labels_`. The loop leaves early once an
  assignment repeats: from there every step is the identity, so the result
  equals that of exactly `num_steps` steps (sklearn with tol=0 stops at the
  same point; its default tol=1e-4 stops earlier, on a small centre shift).

  Args:
    x: float32 [N, D].
    centers: float32 [K, D] initial centres.
    num_steps: EM steps (100 in the paper).
    weights: optional float [N].
    chunk: rows per block of the fused E/M pass (speed only).

  Returns:
    {"centers": [K, D], "labels": int32 [N], "inertia": float32 [],
     "steps": int32 [] steps actually run}.
  """
  n, d = x.shape
  if weights is None:
    weights = jnp.ones((n,), jnp.float32)
  chunk = min(chunk, n)
  pad = (-n) % chunk  # Zero rows of weight 0: they move no centre.
  x_chunks = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, d)
  w_chunks = jnp.pad(weights, (0, pad)).reshape(-1, chunk)
  labels, sums, counts = _pass(x_chunks, w_chunks, centers)

  def cond(carry):
    i, *_, done = carry
    return jnp.logical_and(i < num_steps, jnp.logical_not(done))

  def body(carry):
    i, centers, labels, sums, counts, _ = carry
    centers = jnp.where(counts[:, None] > 0,
                        sums / jnp.maximum(counts[:, None], 1e-12), centers)
    new, sums, counts = _pass(x_chunks, w_chunks, centers)
    return i + 1, centers, new, sums, counts, jnp.all(new == labels)

  steps, centers, labels, *_ = jax.lax.while_loop(
      cond, body,
      (jnp.int32(0), centers, labels, sums, counts, jnp.bool_(False)))
  labels = labels[:n]
  d2 = jnp.take_along_axis(sq_distances(x, centers), labels[:, None], 1)
  inertia = jnp.sum(weights * d2[:, 0])
  return {"centers": centers, "labels": labels, "inertia": inertia,
          "steps": steps}


def kmeans(rng: jax.Array, x: jax.Array, *, num_clusters: int = 5,
           num_steps: int = 100, weights: jax.Array | None = None,
           init: jax.Array | None = None,
           vmap: bool = False) -> dict[str, jax.Array]:
  """k-means over a batch of videos: k-means++ seeding, then `lloyd`.

  Seeding is vmapped over videos. The EM loops run video after video
  (`lax.map`) by default, so each stops at its own convergence; with
  `vmap=True` they run in lockstep until the slowest one converges.

  Args:
    rng: PRNG key (split over videos).
    x: float [V, N, D] pixels of V videos (see module docstring).
    num_clusters: M (5 in the paper).
    num_steps: EM steps (100 in the paper).
    weights: optional float [V, N], 0 for padding.
    init: optional float [V, M, D] initial centres (skips k-means++).
    vmap: vmap the EM loops instead of mapping them.

  Returns:
    {"centers": float32 [V, M, D], "labels": int32 [V, N],
     "inertia": float32 [V], "steps": int32 [V]}.
  """
  if weights is None:
    # Made outside the jit: an all-ones constant inside it would have XLA
    # constant-fold k-means++'s cumsum over N at compile time (seconds).
    weights = jnp.ones(x.shape[:2], jnp.float32)
  return _kmeans(rng, x, weights, init, num_clusters=num_clusters,
                 num_steps=num_steps, vmap=vmap)


@functools.partial(jax.jit,
                   static_argnames=("num_clusters", "num_steps", "vmap"))
def _kmeans(rng, x, weights, init, *, num_clusters, num_steps, vmap):
  """`kmeans`, jit-compiled, with `weights` given."""
  x = x.astype(jnp.float32)
  v = x.shape[0]
  weights = weights.astype(jnp.float32)
  if init is None:
    init = jax.vmap(kmeans_plus_plus, in_axes=(0, 0, None, 0))(
        jax.random.split(rng, v), x, num_clusters, weights)
  init = init.astype(jnp.float32)
  if vmap:
    return jax.vmap(lloyd, in_axes=(0, 0, None, 0))(
        x, init, num_steps, weights)
  return jax.lax.map(lambda a: lloyd(a[0], a[1], num_steps, a[2]),
                     (x, init, weights))


def pseudo_labels(labels: jax.Array, num_clusters: int, *,
                  max_fraction: float = 0.4,
                  weights: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
  """Cluster ids -> pseudo-object label maps (paper §3.3 "Training").

  Clusters holding more than `max_fraction` of a video's (weighted) pixels
  are dropped: "abandon over-size clusters, i.e., accounting for more than
  40% of video pixels". Their pixels become background 0; the kept clusters
  become objects 1, 2, ... in increasing cluster index.

  Args:
    labels: int [V, ...] cluster ids in [0, M).
    num_clusters: M.
    max_fraction: the drop threshold (strictly greater is dropped).
    weights: optional float with `labels`' shape, 0 for padding.

  Returns:
    (objects int32 [V, ...] in [0, M], kept bool [V, M]).
  """
  v = labels.shape[0]
  flat = labels.reshape(v, -1)
  w = (jnp.ones(flat.shape, jnp.float32) if weights is None
       else weights.reshape(v, -1).astype(jnp.float32))
  onehot = jax.nn.one_hot(flat, num_clusters, dtype=jnp.float32)
  sizes = jnp.einsum("vn,vnk->vk", w, onehot)
  kept = sizes <= max_fraction * w.sum(axis=1, keepdims=True)
  object_id = jnp.where(kept, jnp.cumsum(kept, axis=1), 0).astype(jnp.int32)
  objects = jnp.take_along_axis(object_id, flat, axis=1)
  return objects.reshape(labels.shape), kept
