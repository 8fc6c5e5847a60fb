"""Phi on frames and feature maps: identity, flips, equivariance, vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.ops import view_warp


def _pool(x, k):
  b, h, w, c = x.shape
  return x.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))


def test_identity_and_flip():
  x = jax.random.normal(jax.random.key(0), (2, 8, 12, 3))
  boxes, flips = view_warp.identity_phi(2)
  np.testing.assert_allclose(view_warp.apply_phi(x, boxes, flips, (8, 12)),
                             x, atol=1e-6)
  y = view_warp.apply_phi(x, boxes, jnp.array([True, False]), (8, 12),
                          method="nearest")
  np.testing.assert_allclose(y[0], x[0, :, ::-1], atol=1e-6)
  np.testing.assert_allclose(y[1], x[1], atol=1e-6)


def test_equivariance_on_a_linear_image():
  # I(y, x) = a x + b y + c; E = 8 x 8 average pooling (stride-8 "features"
  # whose cells hold I at their centres). Bilinear sampling is exact on a
  # linear function, so E(Phi(I)) == Phi(E(I)) for boxes keeping every
  # sample inside the feature map.
  h, w, k = 64, 96, 8
  yy, xx = np.mgrid[:h, :w].astype(np.float32)
  image = np.stack([0.3 * xx - 0.7 * yy + 2, 0.1 * xx + 0.2 * yy], -1)
  image = jnp.asarray(np.broadcast_to(image, (4, h, w, 2)))
  boxes, flips = view_warp.sample_phi(jax.random.key(1), 4, scale=(0.5, 0.7))
  margin = jnp.array([1 / (h // k), 1 / (w // k)])
  # Squeeze the boxes into [margin, 1 - margin].
  lo = jnp.tile(margin[::-1], 2)
  boxes = lo + boxes * (1 - 2 * lo)
  flips = jnp.array([True, False, True, False])
  e_phi = _pool(view_warp.apply_phi(image, boxes, flips, (h, w)), k)
  phi_e = view_warp.apply_phi(_pool(image, k), boxes, flips, (h // k, w // k))
  np.testing.assert_allclose(e_phi, phi_e, atol=1e-3)
  # The flipped view is the mirror of the unflipped one.
  e_phi_nf = _pool(view_warp.apply_phi(image, boxes, ~flips, (h, w)), k)
  np.testing.assert_allclose(e_phi[0], e_phi_nf[0, :, ::-1], atol=1e-3)


@pytest.mark.parametrize("method,mode", [("bilinear", "bilinear"),
                                         ("nearest", "nearest")])
def test_matches_torch_grid_sample(method, mode):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 10, 14, 2)).astype(np.float32)
  boxes = np.array([[0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0],
                    [0.33, 0.05, 0.61, 0.47]], np.float32)
  flips = np.array([False, True, True])
  out = view_warp.apply_phi(jnp.asarray(x), jnp.asarray(boxes),
                            jnp.asarray(flips), (7, 9), method=method)
  # Independent transcription: grid_sample, align_corners=False, border.
  ho, wo = 7, 9
  fx = (np.arange(wo) + 0.5) / wo
  fy = (np.arange(ho) + 0.5) / ho
  grids = []
  for (x1, y1, x2, y2), f in zip(boxes, flips):
    u = x1 + (1 - fx if f else fx) * (x2 - x1)
    v = y1 + fy * (y2 - y1)
    gu, gv = np.meshgrid(2 * u - 1, 2 * v - 1)
    grids.append(np.stack([gu, gv], -1))
  ref = torch.nn.functional.grid_sample(
      torch.from_numpy(x).permute(0, 3, 1, 2),
      torch.from_numpy(np.stack(grids).astype(np.float32)), mode=mode,
      padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
  ok = np.ones(out.shape[:3], bool)
  if method == "nearest":
    # Both round ties half to even, but float rounding of the source
    # position can fall either side of a tie: compare away from ties.
    for i, (x1, y1, x2, y2) in enumerate(boxes):
      px = (x1 + (1 - fx if flips[i] else fx) * (x2 - x1)) * 14 - 0.5
      py = (y1 + fy * (y2 - y1)) * 10 - 0.5
      tie_x = np.abs(px - np.floor(px) - 0.5) < 1e-4
      tie_y = np.abs(py - np.floor(py) - 0.5) < 1e-4
      ok[i] = ~(tie_y[:, None] | tie_x[None, :])
    assert ok.mean() > 0.5
  np.testing.assert_allclose(np.asarray(out)[ok], ref.numpy()[ok], atol=1e-5)


def test_sample_phi_ranges():
  boxes, flips = view_warp.sample_phi(jax.random.key(2), 256)
  side = boxes[:, 2] - boxes[:, 0]
  np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1], atol=1e-6)
  assert (side >= 0.5).all() and (side <= 1.0).all()
  assert (boxes >= 0).all() and (boxes <= 1 + 1e-6).all()
  assert 0.3 < float(flips.mean()) < 0.7
