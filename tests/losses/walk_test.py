"""CRW walk loss vs an independent PyTorch implementation, and properties.

The torch reference below is written from videowalk@047f3f4 `code/model.py`:
`affinity` (57-66), `stoch_mat` (68-81: dropped entries set to -1e20 IN
PLACE on a view of the affinity tensor, then softmax(A / tau)), the
palindrome loop (139-156) and the loss (171-191: nn.CrossEntropyLoss on
log(A + 1e-20) to identity targets, mean over walks). Masks are passed in,
so both sides drop the same edges.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import walk

torch = pytest.importorskip("torch")


def _torch_walk_loss(q, tau, forward_drop=None, backward_drop=None,
                     flip=False):
  """q: [B, C, T, N] unit-norm nodes (the reference's layout)."""
  f = torch.nn.functional
  a = torch.einsum("bctn,bctm->btnm", q[:, :, :-1], q[:, :, 1:])
  steps = a.shape[1]

  def stoch_mat(mat, drop):
    if drop is not None:
      mat[drop] = -1e20  # In place: writes through the view into `a`.
    return f.softmax(mat / tau, dim=-1)

  a12 = [stoch_mat(a[:, i], None if forward_drop is None
                   else forward_drop[:, i]) for i in range(steps)]
  a21 = [stoch_mat(a[:, i].transpose(-1, -2), None if backward_drop is None
                   else backward_drop[:, i]) for i in range(steps)]
  xents, accs = [], []
  for i in range(1, steps):
    g = a12[:i + 1] + a21[:i + 1][::-1]
    aar = aal = g[0]
    for m in g[1:]:
      aar, aal = aar @ m, m @ aal
    w = aal if flip else aar
    b, n = w.shape[:2]
    logits = torch.log(w + 1e-20).flatten(0, -2)
    target = torch.arange(n)[None].repeat(b, 1).view(-1)
    xents.append(torch.nn.CrossEntropyLoss()(logits, target))
    accs.append((logits.argmax(-1) == target).float().mean())
  return sum(xents) / len(xents), xents, accs


def _nodes(rng, b, t, n, d):
  x = rng.normal(size=(b, t, n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _jax_loss(nodes, tau, **kwargs):
  return walk.walk_loss(walk.affinities(nodes), temperature=tau, **kwargs)


@pytest.mark.parametrize("t,rate,flip", [(4, 0.0, False), (4, 0.3, False),
                                         (5, 0.1, False), (4, 0.3, True)])
def test_loss_and_gradient_match_torch(t, rate, flip):
  rng = np.random.default_rng(t)
  b, n, d, tau = 3, 9, 16, 0.07
  nodes = _nodes(rng, b, t, n, d)
  drops = {}
  if rate:
    drops = {k: jnp.asarray(rng.uniform(size=(b, t - 1, n, n)) < rate)
             for k in ("forward_drop", "backward_drop")}
  (loss, terms), grad = jax.jit(jax.value_and_grad(
      lambda x: _jax_loss(x, tau, flip=flip, **drops), has_aux=True))(
          jnp.asarray(nodes))

  q = torch.tensor(nodes.transpose(0, 3, 1, 2), requires_grad=True)
  torch_drops = {k: torch.from_numpy(np.array(v)) for k, v in drops.items()}
  ref, ref_xents, ref_accs = _torch_walk_loss(q, tau, flip=flip,
                                              **torch_drops)
  ref.backward()
  np.testing.assert_allclose(loss, ref.item(), rtol=1e-5)
  side = "l" if flip else "r"
  assert sorted(terms) == sorted(
      [f"{k}_{side}{i}" for k in ("xent", "acc") for i in range(1, t - 1)])
  for i, (x, a) in enumerate(zip(ref_xents, ref_accs), start=1):
    np.testing.assert_allclose(terms[f"xent_{side}{i}"], x.item(), rtol=1e-5)
    assert float(terms[f"acc_{side}{i}"]) == pytest.approx(a.item())
  np.testing.assert_allclose(
      grad, q.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-6)


def test_backward_matrix_also_loses_the_transposed_forward_drops():
  rng = np.random.default_rng(0)
  aff = jnp.asarray(rng.normal(size=(1, 2, 5, 5)).astype(np.float32))
  forward_drop = jnp.zeros((1, 2, 5, 5), bool).at[0, 0, 1, 3].set(True)
  forward, backward = walk.transition_matrices(
      aff, temperature=0.1, forward_drop=forward_drop)
  assert forward[0, 0, 1, 3] == 0 and backward[0, 0, 3, 1] == 0
  assert np.count_nonzero(np.asarray(forward) == 0) == 1
  assert np.count_nonzero(np.asarray(backward) == 0) == 1
  np.testing.assert_allclose(np.sum(np.asarray(backward), -1), 1, rtol=1e-6)


def test_identity_walk_has_zero_loss():
  # Orthonormal nodes, the same in every frame, tiny temperature: every
  # transition is the identity and each walk returns with probability 1.
  n, t = 6, 4
  nodes = jnp.broadcast_to(jnp.eye(n, 8), (2, t, n, 8))
  loss, terms = _jax_loss(nodes, 0.01)
  assert float(loss) < 1e-6
  assert float(terms["acc_r1"]) == float(terms["acc_r2"]) == 1.0


def test_uniform_transitions_give_log_n():
  n = 7
  loss, terms = walk.walk_loss(jnp.zeros((2, 3, n, n)), temperature=0.05)
  np.testing.assert_allclose(loss, np.log(n), rtol=1e-6)
  np.testing.assert_allclose(terms["xent_r2"], np.log(n), rtol=1e-6)


def test_dropped_edges_get_zero_probability():
  aff = jnp.asarray(np.random.default_rng(1).normal(size=(4, 4)), jnp.float32)
  drop = jnp.eye(4, dtype=bool)
  p = walk.stochastic_matrix(aff, temperature=0.05, drop=drop)
  assert np.all(np.diag(np.asarray(p)) == 0)
  np.testing.assert_allclose(np.sum(np.asarray(p), -1), 1, rtol=1e-6)


def test_edge_drops_are_independent_with_the_given_rate():
  forward, backward = walk.draw_edge_drops(jax.random.key(0),
                                           (2, 2, 49, 49), 0.1)
  assert forward.dtype == backward.dtype == jnp.bool_
  assert 0.09 < float(jnp.mean(forward)) < 0.11
  assert 0.09 < float(jnp.mean(backward)) < 0.11
  assert 0.005 < float(jnp.mean(forward & backward)) < 0.015
  none, _ = walk.draw_edge_drops(jax.random.key(0), (2, 2), 0.0)
  assert not np.any(np.asarray(none))


@pytest.mark.parametrize("shape,message", [
    ((2, 1, 5, 5), "at least 3 frames"),
    ((2, 3, 5, 4), r"must be \[B, T-1, N, N\]"),
])
def test_bad_shapes_are_clear_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    walk.walk_loss(jnp.zeros(shape), temperature=0.05)
