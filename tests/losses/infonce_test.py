"""MoCo's InfoNCE vs an independent PyTorch implementation.

The torch reference below is written from facebookresearch/moco@7397dfe
`moco/builder.py:155-168` (l_pos = einsum('nc,nc->n'), l_neg =
einsum('nc,ck->nk') against the [D, K] queue, logits / T, label 0) and
`main_moco.py:289,418` (nn.CrossEntropyLoss, mean over the batch).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import infonce

torch = pytest.importorskip("torch")


def _torch_moco_loss(q, k, queue_dk, temperature):
  l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
  l_neg = torch.einsum("nc,ck->nk", [q, queue_dk.clone().detach()])
  logits = torch.cat([l_pos, l_neg], dim=1) / temperature
  labels = torch.zeros(logits.shape[0], dtype=torch.long)
  return torch.nn.CrossEntropyLoss()(logits, labels), logits


def _unit(rng, *shape):
  x = rng.standard_normal(shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("temperature", [0.2, 0.07])
def test_loss_logits_and_query_gradient_match_torch(temperature):
  rng = np.random.default_rng(0)
  b, d, k = 6, 16, 32
  q, key, queue = _unit(rng, b, d), _unit(rng, b, d), _unit(rng, k, d)

  tq = torch.tensor(q, requires_grad=True)
  t_loss, t_logits = _torch_moco_loss(tq, torch.tensor(key),
                                      torch.tensor(queue.T), temperature)
  t_loss.backward()

  def loss_fn(query):
    return infonce.infonce_loss(query=query, key=jnp.asarray(key),
                                queue=jnp.asarray(queue),
                                temperature=temperature)

  (loss, terms), grad = jax.value_and_grad(loss_fn, has_aux=True)(
      jnp.asarray(q))
  logits = infonce.moco_logits(query=jnp.asarray(q), key=jnp.asarray(key),
                               queue=jnp.asarray(queue),
                               temperature=temperature)
  np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-5)
  np.testing.assert_allclose(grad, tq.grad.numpy(), rtol=1e-4, atol=1e-6)
  acc = np.mean(np.argmax(t_logits.detach().numpy(), axis=1) == 0)
  assert float(terms["acc1"]) == pytest.approx(acc)
  assert float(terms["l_pos"]) == pytest.approx(np.mean(np.sum(q * key, 1)),
                                                abs=1e-6)


def test_uniform_logits_give_log_of_candidates():
  # q orthogonal to every key and negative: all logits 0 -> log(1 + K).
  query = jnp.zeros((3, 4)).at[:, 0].set(1.0)
  key = jnp.zeros((3, 4)).at[:, 1].set(1.0)
  queue = jnp.zeros((10, 4)).at[:, 2].set(1.0)
  loss, _ = infonce.infonce_loss(query=query, key=key, queue=queue,
                                 temperature=0.2)
  assert float(loss) == pytest.approx(np.log(11.0), rel=1e-6)


def test_no_gradient_reaches_keys_or_queue():
  rng = np.random.default_rng(1)
  q, key, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 8, 8)
  grads = jax.grad(lambda k, qu: infonce.infonce_loss(
      query=jnp.asarray(q), key=k, queue=qu, temperature=0.2)[0],
                   argnums=(0, 1))(jnp.asarray(key), jnp.asarray(queue))
  assert not np.any(np.asarray(grads[0])) and not np.any(np.asarray(grads[1]))
