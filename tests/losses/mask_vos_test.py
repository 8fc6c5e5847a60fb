"""Mask-VOS losses vs an independent torch transcription of Eqs. 6-15.

The torch side below is written from the paper (Li et al., CVPR 2023):
Eq. 6 A = softmax(I_r I_q^T) normalised over the N*HW reference pixels;
Eqs. 7-8 A^T V_r and A^T Y_r; Eq. 12 InfoNCE over cosine similarities with
aligned pixels as positives; Eq. 14 o_k = argmax of the affinity of
E(Phi(I_t')) to E(I_t); Eq. 15 CE against o_k of Phi(E(I_t')) vs E(I_t);
STCN soft aggregation (p_bg = prod(1 - p_i), clamp 1e-7, log-odds) and
cross-entropy against the pseudo mask (Eq. 10).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import mask_vos

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(x):
  return torch.from_numpy(np.asarray(x, np.float32))


def _torch_short(x_next, x_prime, tau):
  a, b = F.normalize(_t(x_next), dim=-1), F.normalize(_t(x_prime), dim=-1)
  logits = torch.einsum("bkd,bld->bkl", a, b) / tau
  n = logits.shape[1]
  target = torch.arange(n).repeat(logits.shape[0])
  return F.cross_entropy(logits.reshape(-1, n), target).item()


def _torch_long(x_prime, x_warped, i_t, tau):
  i_t = F.normalize(_t(i_t), dim=-1)
  a = torch.softmax(torch.einsum("bkd,bod->bko",
                                 F.normalize(_t(x_prime), dim=-1), i_t), -1)
  o = a.argmax(-1)
  logits = torch.einsum("bkd,bld->bkl", F.normalize(_t(x_warped), dim=-1),
                        i_t) / tau
  return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                         o.reshape(-1)).item()


def _torch_aggregate(obj_logits):
  p = torch.sigmoid(_t(obj_logits))
  bg = torch.prod(1 - p, dim=1, keepdim=True)
  p = torch.cat([bg, p], 1).clamp(1e-7, 1 - 1e-7)
  return torch.log(p / (1 - p))


@pytest.mark.parametrize("tau", [1.0, 0.05])
def test_short_and_long_match_torch(tau):
  rng = np.random.default_rng(0)
  x_next, x_prime, x_warped, i_t = (
      rng.normal(size=(2, 20, 8)).astype(np.float32) for _ in range(4))
  short, terms = mask_vos.short_term_loss(
      warped_next=jnp.asarray(x_next), of_warped=jnp.asarray(x_prime),
      temperature=tau)
  np.testing.assert_allclose(short, _torch_short(x_next, x_prime, tau),
                             rtol=1e-5)
  assert set(terms) == {"short_loss", "short_acc"}
  long, _ = mask_vos.long_term_loss(
      of_warped=jnp.asarray(x_prime), warped=jnp.asarray(x_warped),
      target=jnp.asarray(i_t), temperature=tau)
  np.testing.assert_allclose(long, _torch_long(x_prime, x_warped, i_t, tau),
                             rtol=1e-5)


def test_long_term_labels_carry_no_gradient():
  rng = np.random.default_rng(1)
  x_prime, x_warped, i_t = (jnp.asarray(rng.normal(size=(1, 6, 4)))
                            for _ in range(3))
  g = jax.grad(lambda a: mask_vos.long_term_loss(
      of_warped=a, warped=x_warped, target=i_t)[0])(x_prime)
  np.testing.assert_array_equal(g, 0.0)


def test_short_term_perfect_alignment_is_confident():
  x = jnp.eye(16)[None] * 1.0
  loss, terms = mask_vos.short_term_loss(warped_next=x, of_warped=x,
                                         temperature=0.01)
  assert float(loss) < 1e-6 and float(terms["short_acc"]) == 1.0
  # Uniform logits: log P.
  loss, _ = mask_vos.short_term_loss(warped_next=jnp.ones((1, 16, 3)),
                                     of_warped=jnp.ones((1, 16, 3)))
  np.testing.assert_allclose(loss, np.log(16), rtol=1e-6)


def test_affinity_readout_and_coarse_mask_match_torch():
  rng = np.random.default_rng(2)
  b, n, p, d, c = 2, 2, 12, 8, 5
  ref_keys = rng.normal(size=(b, n * p, d)).astype(np.float32)
  q_keys = rng.normal(size=(b, p, d)).astype(np.float32)
  values = rng.normal(size=(b, n * p, c)).astype(np.float32)
  masks = rng.uniform(size=(b, n * p, 2)).astype(np.float32)
  aff = mask_vos.affinity(jnp.asarray(ref_keys), jnp.asarray(q_keys),
                          temperature=0.5)
  ref_aff = torch.softmax(torch.einsum("brd,bqd->brq", _t(ref_keys),
                                       _t(q_keys)) / 0.5, dim=1)
  np.testing.assert_allclose(aff, ref_aff.numpy(), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(aff.sum(axis=1), 1.0, rtol=1e-5)
  v_q = mask_vos.readout(aff, jnp.asarray(values))
  np.testing.assert_allclose(
      v_q, (ref_aff.transpose(1, 2) @ _t(values)).numpy(), rtol=1e-4,
      atol=1e-6)
  y_q = mask_vos.readout(aff, jnp.asarray(masks))
  np.testing.assert_allclose(
      y_q, (ref_aff.transpose(1, 2) @ _t(masks)).numpy(), rtol=1e-4,
      atol=1e-6)


def test_one_hot_affinity_warps_the_reference_mask():
  # Query pixel q has the key of reference pixel perm[q] (orthogonal keys,
  # sharp softmax): A is a permutation and Ybar_q = Y_r[perm].
  p = 16
  perm = np.random.default_rng(3).permutation(p)
  ref = jnp.eye(p)[None]
  query = ref[:, perm]
  aff = mask_vos.affinity(ref, query, temperature=0.01)
  y_r = jnp.asarray(np.random.default_rng(4).integers(0, 2, (1, p, 3)),
                    jnp.float32)
  np.testing.assert_allclose(mask_vos.readout(aff, y_r), y_r[:, perm],
                             atol=1e-6)


def test_soft_aggregation_and_segmentation_loss_match_torch():
  rng = np.random.default_rng(5)
  obj = rng.normal(size=(2, 3, 4, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=(2, 4, 5))
  agg = mask_vos.soft_aggregate(jnp.asarray(obj))
  ref = _torch_aggregate(obj)
  np.testing.assert_allclose(agg, ref.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.nn.softmax(agg, axis=1).sum(axis=1), 1.0,
                             rtol=1e-6)
  loss, terms = mask_vos.segmentation_loss(object_logits=jnp.asarray(obj),
                                           labels=jnp.asarray(labels))
  ref_loss = F.cross_entropy(ref, torch.from_numpy(labels)).item()
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  assert 0 <= float(terms["seg_acc"]) <= 1


def test_absent_objects_are_ignored():
  rng = np.random.default_rng(6)
  obj = jnp.asarray(rng.normal(size=(1, 3, 4, 4)), jnp.float32)
  valid = jnp.array([[True, False, True]])
  agg = mask_vos.soft_aggregate(obj, valid)
  # Same background and objects as aggregating the two present objects.
  two = mask_vos.soft_aggregate(obj[:, jnp.array([0, 2])])
  np.testing.assert_allclose(agg[:, jnp.array([0, 1, 3])], two, atol=1e-5)
  np.testing.assert_allclose(agg[:, 2], np.log(1e-7 / (1 - 1e-7)), rtol=1e-5)


def test_total_loss_weights():
  assert float(mask_vos.total_loss(seg=1.0, short=2.0, long=4.0)) == (
      pytest.approx(1.0 + 0.2 + 2.0))
