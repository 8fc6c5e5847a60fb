"""CRW's contrastive random walk loss on a space-time graph of patches.

Reference: ajabri/videowalk@047f3f4 `code/model.py` (`affinity` 57-66,
`stoch_mat` 68-81, palindromes 139-156, loss 171-191).

Conventions. A clip has T frames of N nodes each; node embeddings are
`nodes` float [B, T, N, D], L2-normalised over D. Affinity A_t[n, m] =
<q_t,n, q_t+1,m> is [B, T-1, N, N] (rows index frame t, columns frame t+1).
Transition matrices are row-stochastic: the forward step P_t = softmax(A_t /
tau) walks t -> t+1 and the backward step Pb_t = softmax(A_t^T / tau) walks
t+1 -> t. Edge-dropout masks are bool arrays of the matrix they act on
(forward [B, T-1, N_t, N_t+1], backward [B, T-1, N_t+1, N_t]); True drops
the edge (its affinity becomes -1e20 before the softmax).

The matrix products run at HIGHEST precision: PyTorch does float32 matmuls
in full precision on GPU by default (no TF32), and the walk is tiny.
"""

import jax
import jax.numpy as jnp

# `model.py:9`: added to the walk probabilities before the log.
EPS = 1e-20
# `model.py:75`: the affinity given to a dropped edge.
DROPPED = -1e20

_HIGHEST = jax.lax.Precision.HIGHEST


def affinities(nodes: jax.Array) -> jax.Array:
  """Affinities between consecutive frames (`model.py:57-66,139`).

  Args:
    nodes: float [B, T, N, D] node embeddings.

  Returns:
    float [B, T-1, N, N]; [b, t, n, m] = <nodes[b, t, n], nodes[b, t+1, m]>.
  """
  return jnp.einsum("btnd,btmd->btnm", nodes[:, :-1], nodes[:, 1:],
                    precision=_HIGHEST)


def draw_edge_drops(rng: jax.Array, shape: tuple[int, ...],
                    rate: float) -> tuple[jax.Array, jax.Array]:
  """Independent dropout masks for the forward and backward matrices.

  As `stoch_mat` draws them (`model.py:74-75`): every entry of every
  transition matrix is dropped with probability `rate`, U[0, 1) < rate.

  Args:
    rng: PRNG key.
    shape: the affinities' shape (B, T-1, N, N).
    rate: edge-dropout probability (0.1 in the reference command).

  Returns:
    (forward_drop, backward_drop), bool arrays of `shape`.
  """
  forward_key, backward_key = jax.random.split(rng)
  return (jax.random.uniform(forward_key, shape) < rate,
          jax.random.uniform(backward_key, shape) < rate)


def stochastic_matrix(affinity: jax.Array, *, temperature: float,
                      drop: jax.Array | None = None) -> jax.Array:
  """Row softmax of affinity / temperature after edge dropout (`stoch_mat`).

  Args:
    affinity: float [..., N, M].
    temperature: softmax temperature tau.
    drop: optional bool [..., N, M]; True sets the entry to -1e20 first.

  Returns:
    float [..., N, M], rows summing to 1.
  """
  if drop is not None:
    affinity = jnp.where(drop, DROPPED, affinity)
  return jax.nn.softmax(affinity / temperature, axis=-1)


def transition_matrices(
    affinity: jax.Array, *, temperature: float,
    forward_drop: jax.Array | None = None,
    backward_drop: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Forward and backward transition matrices of every frame pair.

  The reference drops forward edges in place on a view of the affinity
  tensor (`model.py:75` on `As[:, i]`, `:141`) and then builds the backward
  matrices from the same tensor (`:145`), so a backward matrix loses the
  transposed forward drops as well as its own. This is reproduced.

  Args:
    affinity: float [B, T-1, N, N] from `affinities`.
    temperature: softmax temperature.
    forward_drop: optional bool [B, T-1, N, N] drops of P_t.
    backward_drop: optional bool [B, T-1, N, N] drops of Pb_t (in Pb_t's
      layout, rows = frame t+1).

  Returns:
    (forward, backward): float [B, T-1, N, N] each, P_t and Pb_t.
  """
  transposed = jnp.swapaxes(affinity, -1, -2)
  if forward_drop is not None:
    transposed = jnp.where(jnp.swapaxes(forward_drop, -1, -2), DROPPED,
                           transposed)
  forward = stochastic_matrix(affinity, temperature=temperature,
                              drop=forward_drop)
  backward = stochastic_matrix(transposed, temperature=temperature,
                               drop=backward_drop)
  return forward, backward


def palindrome_walks(forward: jax.Array, backward: jax.Array, *,
                     flip: bool = False) -> dict[str, jax.Array]:
  """Walks from frame 0 to frame i+1 and back, i = 1 .. T-2 (`:146-153`).

  The reference skips the shortest cycle 0 -> 1 -> 0 (its loop starts at
  i = 1), so T = 4 gives two walks. Products are taken left to right in the
  reference's order: W_i = P_0 P_1 ... P_i Pb_i ... Pb_0. With `flip`
  (`--flip`) each next matrix multiplies from the left instead:
  Pb_0 ... Pb_i P_i ... P_0.

  Args:
    forward: float [B, T-1, N, N], P_t.
    backward: float [B, T-1, N, N], Pb_t.
    flip: left-multiply.

  Returns:
    {name: float [B, N, N]} with names 'r1', 'r2', ... ('l1', ... with
    `flip`), the reference's walk names.
  """
  walks = {}
  for i in range(1, forward.shape[1]):
    path = ([forward[:, t] for t in range(i + 1)] +
            [backward[:, t] for t in range(i, -1, -1)])
    walk = path[0]
    for step in path[1:]:
      if flip:
        walk = jnp.matmul(step, walk, precision=_HIGHEST)
      else:
        walk = jnp.matmul(walk, step, precision=_HIGHEST)
    walks[f"{'l' if flip else 'r'}{i}"] = walk
  return walks


def cycle_cross_entropy(walk: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cross-entropy of log(W + 1e-20) to the identity (`model.py:171-177`).

  As `nn.CrossEntropyLoss`, log(W + eps) are logits: a log-softmax is
  applied to them (a no-op up to rounding, since W's rows sum to 1).

  Args:
    walk: float [B, N, N] row-stochastic walk; node n should return to n.

  Returns:
    (xent, acc): mean over the B * N start nodes of -log p(return to the
    start), and the fraction of start nodes whose most likely end is the
    start.
  """
  n = walk.shape[-1]
  logits = jnp.log(walk + EPS)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  xent = -jnp.mean(jnp.diagonal(log_probs, axis1=-2, axis2=-1))
  acc = jnp.mean(jnp.argmax(logits, axis=-1) == jnp.arange(n))
  return xent, acc.astype(jnp.float32)


def walk_loss(affinity: jax.Array, *, temperature: float,
              forward_drop: jax.Array | None = None,
              backward_drop: jax.Array | None = None,
              flip: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The CRW objective: mean over palindromes of the cycle cross-entropy.

  Loss = sum of the per-walk cross-entropies / number of walks
  (`model.py:168,191`); each cross-entropy is a mean over B * N nodes.

  Args:
    affinity: float [B, T-1, N, N] from `affinities`, T >= 3.
    temperature: softmax temperature (0.05 in the reference command).
    forward_drop, backward_drop: optional edge-dropout masks (see
      `transition_matrices`, `draw_edge_drops`).
    flip: left-multiplied walks (`--flip`).

  Returns:
    (loss, terms): scalar loss and {"xent_<walk>", "acc_<walk>"} per walk.
  """
  if affinity.ndim != 4 or affinity.shape[-1] != affinity.shape[-2]:
    raise ValueError("affinity must be [B, T-1, N, N]; got shape "
                     f"{affinity.shape}.")
  if affinity.shape[1] < 2:
    raise ValueError(
        f"CRW needs clips of at least 3 frames (got {affinity.shape[1] + 1}):"
        " the reference's shortest walk is 0 -> 2 -> 0.")
  forward, backward = transition_matrices(
      affinity, temperature=temperature, forward_drop=forward_drop,
      backward_drop=backward_drop)
  terms, xents = {}, []
  for name, walk in palindrome_walks(forward, backward, flip=flip).items():
    xent, acc = cycle_cross_entropy(walk)
    terms[f"xent_{name}"], terms[f"acc_{name}"] = xent, acc
    xents.append(xent)
  return sum(xents) / len(xents), terms
