"""BYOL's global loss vs an independent PyTorch implementation.

The torch reference is written from deepmind-research@f5de0ed
`byol/utils/helpers.py:74-112` (l2_normalize with rsqrt(max(sum x^2,
1e-12)), regression_loss = sum((n(x) - n(y))^2)) and
`byol/byol_experiment.py:243-250` (p1 vs z2 plus p2 vs z1, batch mean).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import byol

torch = pytest.importorskip("torch")


def _torch_normalize(x):
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True),
                                     min=1e-12))


def _torch_byol_loss(p1, p2, z1, z2):
  def regression(x, y):
    return ((_torch_normalize(x) - _torch_normalize(y.detach()))**2).sum(-1)
  return (regression(p1, z2) + regression(p2, z1)).mean()


def test_symmetric_loss_and_gradients_match_torch():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = (rng.standard_normal((5, 12)).astype(np.float32) * s
                    for s in (1.0, 3.0, 0.5, 2.0))
  tp1, tp2 = (torch.tensor(x, requires_grad=True) for x in (p1, p2))
  t_loss = _torch_byol_loss(tp1, tp2, torch.tensor(z1), torch.tensor(z2))
  t_loss.backward()

  def loss_fn(a, b):
    return byol.symmetric_loss(pred1=a, pred2=b, target1=jnp.asarray(z1),
                               target2=jnp.asarray(z2))

  (loss, terms), grads = jax.value_and_grad(loss_fn, argnums=(0, 1),
                                            has_aux=True)(
                                                jnp.asarray(p1),
                                                jnp.asarray(p2))
  np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-5)
  np.testing.assert_allclose(grads[0], tp1.grad.numpy(), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(grads[1], tp2.grad.numpy(), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(terms["loss_12"] + terms["loss_21"], loss,
                             rtol=1e-6)


def test_loss_is_two_minus_two_cosine_and_stops_target_gradient():
  pred = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  target = jnp.array([[3.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
  np.testing.assert_allclose(
      byol.regression_loss(pred=pred, target=target),
      [0.0, 4.0, 2.0 - np.sqrt(2.0)], atol=1e-6)
  grad = jax.grad(lambda t: jnp.sum(byol.regression_loss(pred=pred,
                                                         target=t)))(target)
  assert not np.any(np.asarray(grad))
