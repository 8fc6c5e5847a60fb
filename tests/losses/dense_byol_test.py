"""FC dense-BYOL loss vs an independent PyTorch implementation.

The torch reference below is written from SFC's `regression_loss`
(Alxead/SFC@c4e349a `code/models/fine_grained.py:78-122`) and `forward`
(`:162-163`): NCHW tensors, bmm of normalised maps, positive mask from crop
boxes with d < r over the larger cell diagonal.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import dense_byol
from corrjax.ops import geometry

torch = pytest.importorskip("torch")


def _torch_regression_loss(q, k, coord_q, coord_k, pos_radius):
  n, c, h, w = q.shape
  q, k = q.view(n, c, -1), k.view(n, c, -1)
  xs = torch.arange(0., float(w), dtype=coord_q.dtype).view(1, 1, -1)
  xs = xs.repeat(1, h, 1)
  ys = torch.arange(0., float(h), dtype=coord_q.dtype).view(1, -1, 1)
  ys = ys.repeat(1, 1, w)
  qbw = ((coord_q[:, 2] - coord_q[:, 0]) / w).view(-1, 1, 1)
  qbh = ((coord_q[:, 3] - coord_q[:, 1]) / h).view(-1, 1, 1)
  kbw = ((coord_k[:, 2] - coord_k[:, 0]) / w).view(-1, 1, 1)
  kbh = ((coord_k[:, 3] - coord_k[:, 1]) / h).view(-1, 1, 1)
  max_diag = torch.max(torch.sqrt(qbw**2 + qbh**2), torch.sqrt(kbw**2 + kbh**2))
  cqx = (xs + 0.5) * qbw + coord_q[:, 0].view(-1, 1, 1)
  cqy = (ys + 0.5) * qbh + coord_q[:, 1].view(-1, 1, 1)
  ckx = (xs + 0.5) * kbw + coord_k[:, 0].view(-1, 1, 1)
  cky = (ys + 0.5) * kbh + coord_k[:, 1].view(-1, 1, 1)
  dist = torch.sqrt((cqx.view(-1, h * w, 1) - ckx.view(-1, 1, h * w))**2 +
                    (cqy.view(-1, h * w, 1) - cky.view(-1, 1, h * w))**2)
  mask = (dist / max_diag < pos_radius).float()
  logit = torch.bmm(q.transpose(1, 2), k)
  loss = (logit * mask).sum(-1).sum(-1) / (mask.sum(-1).sum(-1) + 1e-6)
  return -2 * loss.mean(), mask


def _torch_fc_loss(p1, p2, t1, t2, c1, c2, r):
  norm = torch.nn.functional.normalize
  p1, p2, t1, t2 = (norm(x, dim=1) for x in (p1, p2, t1, t2))
  return (_torch_regression_loss(p1, t2, c1, c2, r)[0] +
          _torch_regression_loss(p2, t1, c2, c1, r)[0])


def _random_boxes(rng, n):
  x1, y1 = rng.uniform(0, 0.6, (2, n))
  x2 = x1 + rng.uniform(0.05, 0.4, n)
  y2 = y1 + rng.uniform(0.05, 0.4, n)
  return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


def _nhwc(x):
  return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


@pytest.mark.parametrize("h,w,radius", [(8, 8, 0.5), (6, 10, 0.7),
                                        (5, 5, 2.0)])
def test_symmetric_loss_matches_torch(h, w, radius):
  rng = np.random.default_rng(h * w)
  n, c = 6, 5
  p1, p2, t1, t2 = (rng.normal(size=(n, c, h, w)).astype(np.float32)
                    for _ in range(4))
  b1, b2 = _random_boxes(rng, n), _random_boxes(rng, n)
  b2[0] = b1[0]  # Identical crops.
  b2[1] = [b1[1, 0] + 0.01, b1[1, 1], b1[1, 2] + 0.01, b1[1, 3]]  # Shifted.
  expected = _torch_fc_loss(*(torch.from_numpy(x) for x in
                              (p1, p2, t1, t2, b1, b2)), radius)
  ours, terms = dense_byol.symmetric_loss(
      pred1=_nhwc(p1), pred2=_nhwc(p2), target1=_nhwc(t1),
      target2=_nhwc(t2), boxes1=jnp.asarray(b1), boxes2=jnp.asarray(b2),
      radius=radius)
  np.testing.assert_allclose(ours, expected.item(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(terms["loss_12"] + terms["loss_21"], ours,
                             rtol=1e-6)


def test_positive_mask_matches_torch_including_boundary_ties():
  rng = np.random.default_rng(0)
  boxes = _random_boxes(rng, 4)
  # Box 3 vs a copy shifted by exactly one bin: distances equal to one
  # diagonal-fraction occur, exercising the strict comparison.
  other = boxes.copy()
  other[3, [0, 2]] += (boxes[3, 2] - boxes[3, 0]) / 4
  q = torch.zeros(4, 1, 4, 4)
  _, expected = _torch_regression_loss(q, q, torch.from_numpy(boxes),
                                       torch.from_numpy(other), 1.0)
  ours = geometry.positive_mask(jnp.asarray(boxes), jnp.asarray(other), 4, 4,
                                1.0)
  np.testing.assert_array_equal(np.asarray(ours), expected.numpy())


def test_identical_crops_give_only_the_diagonal():
  box = jnp.asarray([[0.1, 0.2, 0.7, 0.9]])
  mask = np.asarray(geometry.positive_mask(box, box, 8, 8, 0.5))[0]
  # Neighbouring cells are one bin (> 0.5 diagonals) apart.
  np.testing.assert_array_equal(mask, np.eye(64))
  wide = np.asarray(geometry.positive_mask(box, box, 8, 8, 1.01))[0]
  assert np.all(np.diag(wide) == 1) and wide.sum() > 64
  # Same-row neighbours are bin_w apart: positive iff bin_w < r * diagonal.
  assert np.all(wide.sum(1) <= 9)


def test_disjoint_crops_give_no_positives_and_finite_loss():
  b1 = jnp.asarray([[0.0, 0.0, 0.4, 0.4]])
  b2 = jnp.asarray([[0.6, 0.6, 1.0, 1.0]])
  assert float(geometry.positive_mask(b1, b2, 8, 8, 0.5).sum()) == 0
  x = jnp.ones((1, 8, 8, 4))
  loss, _ = dense_byol.symmetric_loss(pred1=x, pred2=x, target1=x, target2=x,
                                      boxes1=b1, boxes2=b2, radius=0.5)
  assert np.isfinite(float(loss)) and abs(float(loss)) < 1e-6


def test_cell_centers_follow_the_box_convention():
  box = jnp.asarray([[0.0, 0.0, 1.0, 0.5]])
  centers = np.asarray(geometry.cell_centers(box, 2, 4))[0]
  np.testing.assert_allclose(centers[0], [0.125, 0.125])  # Row 0, column 0.
  np.testing.assert_allclose(centers[3], [0.875, 0.125])  # Row 0, column 3.
  np.testing.assert_allclose(centers[4], [0.125, 0.375])  # Row 1, column 0.
  np.testing.assert_allclose(geometry.cell_diagonals(box, 2, 4),
                             [np.hypot(0.25, 0.25)])


def test_perfect_alignment_reaches_minus_four():
  box = jnp.asarray([[0.1, 0.1, 0.9, 0.9]] * 2)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 8)))
  loss, _ = dense_byol.symmetric_loss(pred1=x, pred2=x, target1=x, target2=x,
                                      boxes1=box, boxes2=box, radius=0.5)
  np.testing.assert_allclose(loss, -4.0, rtol=1e-5)
