"""LIIR's loss terms against a torch transcription of LIIR_pytorch.

The transcriptions follow shasha521/LIIR_pytorch@21c7ba5
`models/colorizer_momen.py` line by line (correlation sampler as unfold,
`Colorizer.forward` 130-215, `make_gaussian` 29-39) and `main_dis.py`
(`compute_lphoto` 215-248), in NCHW, on random inputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import liir_compactness
from corrjax.losses import liir_inter
from corrjax.losses import liir_objective
from corrjax.losses import liir_reconstruction as recon

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Jitted once per shape: eager dispatch of the window stacks is slow.
_inter = jax.jit(liir_inter.inter_reconstruction,
                 static_argnames=("radius", "scale"))
_intra = jax.jit(recon.intra_reconstruction,
                 static_argnames=("radius", "stride", "scale"))


def _t(x):
  """NHWC numpy -> NCHW torch (float64 for a tight reference)."""
  return torch.from_numpy(np.asarray(x, np.float64)).permute(0, 3, 1, 2)


def torch_correlation(in1, in2, patch):
  """spatial-correlation-sampler(kernel 1, patch, padding 0) -> [b, P*P, hw].

  out[b, dy, dx, i, j] = <in1[b, :, i, j], in2[b, :, i + dy - P//2, ...]>,
  zero outside (liir_maskvos.md §7).
  """
  b, c, h, w = in1.shape
  cols = F.unfold(in2, patch, padding=patch // 2).reshape(b, c, patch**2,
                                                         h * w)
  return (in1.reshape(b, c, 1, h * w) * cols).sum(1)


def torch_intra(feats_t, feats_r, label_r, label_t, r=6, d=4):
  """`Colorizer.forward` 130-133, 173-175, 198-207; `main_dis.py:236-237`."""
  b, c, h, w = feats_t.shape
  p = 2 * r + 1
  corr = F.softmax(torch_correlation(feats_t, feats_r, p), dim=1)
  qr = label_r[:, :, ::d, ::d]
  uf = F.unfold(qr, kernel_size=p, padding=r).reshape(b, qr.size(1), p * p,
                                                      h * w)
  out = (corr.unsqueeze(1) * uf).sum(2).reshape(b, qr.size(1), h, w)
  up = F.interpolate(out, label_t.shape[2:], mode="bilinear")
  return F.smooth_l1_loss(up * 20, label_t * 20), corr


def torch_inter(feats_t, feats_r, queue, refs_queue, refs, label_r, label_t,
                active=True, r=3):
  """`Colorizer.forward` 135-137, 143-170, 209-215; `main_dis.py:242-244`."""
  b, c, h, w = feats_t.shape
  p = 2 * r + 1
  corr = torch_correlation(feats_t, feats_r, p)
  if active:
    indices, min_len = [], 10000
    for item in refs:
      indice = [i for i in range(len(queue)) if refs_queue[i] != item]
      min_len = min(min_len, len(indice))
      indices.append(indice)
    feats_ns = [queue[[it[k] for it in indices]] for k in range(min_len)]
    corr_hard = torch.cat([torch_correlation(feats_t, n, p)
                           for n in feats_ns], 1)
    corr2 = torch.cat([corr, corr_hard], dim=1)
    max_channel = torch.max(corr2, dim=1, keepdim=True)[0]
    corr = (torch.exp(corr - max_channel) /
            torch.sum(torch.exp(corr2 - max_channel), dim=1, keepdim=True))
  else:
    corr = F.softmax(corr, dim=1)
  qr = F.interpolate(label_r, size=(h, w), mode="bilinear")
  uf = F.unfold(qr, kernel_size=p, padding=r).reshape(b, qr.size(1), p * p,
                                                      h * w)
  out2 = (corr.unsqueeze(1) * uf).sum(2).reshape(b, qr.size(1), h, w)
  tar = F.interpolate(label_t, (h, w), mode="bilinear")
  return F.smooth_l1_loss(out2 * 20, tar * 20), out2


def torch_compact(corr_pixel, nref, p, h, w):
  """`Colorizer.forward` 179-196 (training) with `make_gaussian` 29-39."""

  def make_gaussian(size, sigma=1, center=None):
    x = torch.arange(0, size[3], 1, dtype=float).repeat(size[1], 1).repeat(
        size[0], 1, 1)
    y = torch.arange(0, size[2], 1, dtype=float).repeat(size[1], 1).repeat(
        size[0], 1, 1)
    x0, y0 = center
    return torch.exp(-4 * torch.log(torch.tensor(2.0)) * (
        (x - x0).unsqueeze(2) ** 2 + (y - y0).unsqueeze(3) ** 2)
                     / sigma ** 2).float()

  corr_compact = corr_pixel.reshape(-1, nref, p * p, h * w).permute(
      0, 1, 3, 2).contiguous().reshape(-1, nref * h * w, p * p)
  value_axis_, axis = torch.topk(corr_compact.detach(), 2, dim=-1,
                                 largest=True, sorted=False)
  value_axis = torch.softmax(value_axis_, dim=-1)
  heats = []
  for ii in range(2):
    ys = axis[:, :, ii:ii + 1] // p
    xs = axis[:, :, ii:ii + 1] % p
    heats.append(make_gaussian([ys.size(0), ys.size(1), p, p],
                               center=[xs, ys]))
  corr_heat = (heats[0].flatten(2) * value_axis[:, :, 0:1] +
               heats[1].flatten(2) * value_axis[:, :, 1:2]).double()
  value_axis_, _ = torch.max(value_axis_, dim=-1, keepdim=True)
  indic = value_axis_ > 0.5
  return F.smooth_l1_loss(corr_compact * indic * 20, corr_heat * indic * 20)


def _normal(rng, shape, scale=1.0):
  return (scale * rng.normal(size=shape)).astype(np.float32)


def test_local_correlation_and_unfold_match_torch():
  rng = np.random.default_rng(0)
  a, b = _normal(rng, (2, 6, 7, 3)), _normal(rng, (2, 6, 7, 3))
  got = recon.local_correlation(a, b, 2)
  want = torch_correlation(_t(a), _t(b), 5).reshape(2, 25, 6, 7)
  np.testing.assert_allclose(np.moveaxis(np.asarray(got), -1, 1), want,
                             atol=1e-5)
  got = recon.unfold_windows(a, 2)  # [B, h, w, 25, C].
  want = F.unfold(_t(a), 5, padding=2).reshape(2, 3, 25, 6, 7)
  np.testing.assert_allclose(np.transpose(np.asarray(got), (0, 4, 3, 1, 2)),
                             want, atol=0)


def test_intra_reconstruction_matches_torch():
  rng = np.random.default_rng(1)
  ft, fr = _normal(rng, (2, 8, 8, 5), 0.7), _normal(rng, (2, 8, 8, 5), 0.7)
  yr, yt = _normal(rng, (2, 32, 32, 1), 0.3), _normal(rng, (2, 32, 32, 1), 0.3)
  loss, aux = _intra(
      query=ft, refs=fr[:, None], ref_labels=yr[:, None], target_labels=yt)
  want, corr = torch_intra(_t(ft), _t(fr), _t(yr), _t(yt))
  np.testing.assert_allclose(loss, want.item(), rtol=1e-5)
  probs = np.asarray(aux["probs"])[:, :, :, 0]  # [B, h, w, 169].
  np.testing.assert_allclose(
      probs.reshape(2, 64, 169).transpose(0, 2, 1), corr, atol=1e-6)


def test_two_references_share_one_softmax():
  rng = np.random.default_rng(2)
  ft = _normal(rng, (1, 5, 5, 4))
  refs = _normal(rng, (1, 2, 5, 5, 4))
  probs = recon.intra_affinity(ft, refs, 2)
  np.testing.assert_allclose(np.sum(probs, (-1, -2)), 1.0, atol=1e-5)
  logits = np.concatenate([recon.local_correlation(ft, refs[:, r], 2)
                           for r in range(2)], -1)
  np.testing.assert_allclose(probs.reshape(1, 5, 5, 50),
                             jax.nn.softmax(logits), atol=1e-6)


def test_identical_frames_with_a_sharp_affinity_reconstruct_exactly():
  # One-hot features per cell, scaled: each cell matches only itself.
  h = w = 6
  codes = np.eye(h * w, dtype=np.float32).reshape(1, h, w, h * w) * 50.0
  labels = np.random.default_rng(3).uniform(
      -1, 1, (1, 4 * h, 4 * w, 1)).astype(np.float32)
  # Labels constant on each 4x4 block, so upsampling changes nothing inside.
  labels = np.repeat(np.repeat(labels[:, ::4, ::4], 4, 1), 4, 2)
  loss, aux = _intra(
      query=codes, refs=codes[:, None], ref_labels=labels[:, None],
      target_labels=labels)
  np.testing.assert_allclose(aux["prediction"], labels[:, ::4, ::4],
                             atol=1e-6)
  # The loss is then that of the exact stride-4 labels, upsampled.
  from corrjax.ops import torch_resize  # pylint: disable=g-import-not-at-top
  exact = torch_resize.resize(labels[:, ::4, ::4], (4 * h, 4 * w),
                              "bilinear")
  np.testing.assert_allclose(
      loss, recon.smooth_l1(20 * exact, 20 * labels), rtol=1e-6)


@pytest.mark.parametrize("queue_ids", [[7, 1, 3, 1, 9, 2, 1, 5],
                                       [1, 1, 1, 1, 1, 1, 1, 1],
                                       [2, 2, 1, 4, 4, 1, 3, 2]])
def test_inter_reconstruction_matches_torch(queue_ids):
  rng = np.random.default_rng(4)
  b, h, w, c, n = 3, 6, 6, 4, len(queue_ids)
  ft, fr = _normal(rng, (b, h, w, c)), _normal(rng, (b, h, w, c))
  queue = _normal(rng, (n, h, w, c))
  yr, yt = _normal(rng, (b, 48, 48, 1), .4), _normal(rng, (b, 48, 48, 1), .4)
  video_ids = np.array([1, 2, 4])
  queue_ids = np.array(queue_ids)
  mask = liir_inter.negative_mask(queue_ids, video_ids)
  loss, aux = _inter(
      query=ft, keys=fr, ref_labels=yr, target_labels=yt, negatives=queue,
      negatives_mask=mask)
  active = bool(np.asarray(mask).any())
  want, out2 = torch_inter(_t(ft), _t(fr), _t(queue), list(queue_ids),
                           list(video_ids), _t(yr), _t(yt), active=active)
  np.testing.assert_allclose(loss, want.item(), rtol=1e-5)
  np.testing.assert_allclose(np.moveaxis(np.asarray(aux["prediction"]), -1,
                                         1), out2, atol=1e-5)


def test_inter_with_an_empty_queue_is_the_intra_softmax():
  rng = np.random.default_rng(5)
  ft, fr = _normal(rng, (2, 5, 5, 3)), _normal(rng, (2, 5, 5, 3))
  yr, yt = _normal(rng, (2, 40, 40, 1)), _normal(rng, (2, 40, 40, 1))
  want, _ = torch_inter(_t(ft), _t(fr), None, [], [0, 1], _t(yr), _t(yt),
                        active=False)
  for queue, ids in ((np.zeros((0, 5, 5, 3), np.float32), np.zeros(0, int)),
                     (_normal(rng, (4, 5, 5, 3)), -np.ones(4, int))):
    mask = liir_inter.negative_mask(ids, np.array([0, 1]))
    loss, aux = _inter(
        query=ft, keys=fr, ref_labels=yr, target_labels=yt, negatives=queue,
        negatives_mask=mask)
    np.testing.assert_allclose(loss, want.item(), rtol=1e-5)
    np.testing.assert_allclose(aux["intra_mass"], 1.0, atol=1e-6)


def test_queue_of_the_same_video_gives_no_negatives():
  rng = np.random.default_rng(6)
  ft, fr = _normal(rng, (2, 5, 5, 3)), _normal(rng, (2, 5, 5, 3))
  yr, yt = _normal(rng, (2, 40, 40, 1)), _normal(rng, (2, 40, 40, 1))
  queue = _normal(rng, (4, 5, 5, 3))
  mask = liir_inter.negative_mask(np.array([3, 3, 3, 3]), np.array([3, 3]))
  assert not np.asarray(mask).any()
  same, _ = _inter(
      query=ft, keys=fr, ref_labels=yr, target_labels=yt, negatives=queue,
      negatives_mask=mask)
  none, _ = _inter(
      query=ft, keys=fr, ref_labels=yr, target_labels=yt,
      negatives=queue[:0], negatives_mask=mask[:, :0])
  np.testing.assert_allclose(same, none, rtol=1e-6)
  grads = jax.jit(jax.grad(lambda q: _inter(
      query=q, keys=fr, ref_labels=yr, target_labels=yt, negatives=queue,
      negatives_mask=mask)[0]))(ft)
  assert np.isfinite(np.asarray(grads)).all()


def test_negative_mask_equalizes_like_min_len():
  mask = liir_inter.negative_mask(np.array([5, 1, 2, -1, 1, 3, 2]),
                                  np.array([1, 2]))
  # Item 1: entries 0, 2, 5, 6 are other videos; item 2: 0, 1, 4, 5.
  # min_len = 4 for both; slot 3 is empty.
  np.testing.assert_array_equal(mask, [[1, 0, 1, 0, 0, 1, 1],
                                       [1, 1, 0, 0, 1, 1, 0]])
  mask = liir_inter.negative_mask(np.array([5, 1, 1, 2]), np.array([1, 2]))
  np.testing.assert_array_equal(mask, [[1, 0, 0, 1], [1, 1, 0, 0]])
  loose = liir_inter.negative_mask(np.array([5, 1, 1, 2]), np.array([1, 2]),
                                   equalize=False)
  np.testing.assert_array_equal(loose, [[1, 0, 0, 1], [1, 1, 1, 0]])


def test_compactness_matches_torch():
  rng = np.random.default_rng(7)
  # Sharpened logits so that some windows pass the 0.5 threshold.
  logits = _normal(rng, (2, 6, 6, 1, 49), 3.0)
  probs = jax.nn.softmax(jnp.asarray(logits), axis=-1)
  loss, terms = liir_compactness.compactness_loss(probs)
  assert 0 < float(terms["compact_fraction"]) < 1
  corr_pixel = torch.from_numpy(np.asarray(probs, np.float64)).reshape(
      2, 36, 49).permute(0, 2, 1)
  want = torch_compact(corr_pixel, 1, 7, 6, 6)
  np.testing.assert_allclose(loss, want.item(), rtol=1e-5)


def test_compactness_target_is_a_gaussian_at_the_peaks():
  probs = np.zeros((1, 25), np.float32)
  probs[0, 12], probs[0, 0] = 0.9, 0.1  # Peaks at (2, 2) and (0, 0).
  target, mask = liir_compactness.compactness_target(jnp.asarray(probs))
  w = np.exp([0.9, 0.1]) / np.exp([0.9, 0.1]).sum()
  ys, xs = np.divmod(np.arange(25), 5)
  g = lambda cy, cx: np.exp(-4 * math.log(2) * ((xs - cx)**2 + (ys - cy)**2))
  np.testing.assert_allclose(target[0], w[0] * g(2, 2) + w[1] * g(0, 0),
                             atol=1e-6)
  assert bool(mask[0, 0])


def test_total_is_intra_plus_half_inter_plus_compact():
  rng = np.random.default_rng(8)
  feats = {"target_match": _normal(rng, (2, 8, 8, 4)),
           "reference_match": _normal(rng, (2, 8, 8, 4)),
           "target_semantic": _normal(rng, (2, 4, 4, 5)),
           "reference_keys": _normal(rng, (2, 4, 4, 5))}
  yr, yt = _normal(rng, (2, 32, 32, 1)), _normal(rng, (2, 32, 32, 1))
  queue = _normal(rng, (4, 4, 4, 5))
  mask = liir_inter.negative_mask(np.array([0, 1, 2, 3]), np.array([0, 1]))
  loss, terms = jax.jit(liir_objective.liir_loss)(
      feats=feats, ref_labels=yr, target_labels=yt, negatives=queue,
      negatives_mask=mask)
  np.testing.assert_allclose(
      loss, terms["intra"] + 0.5 * terms["inter"] + terms["compact"],
      rtol=1e-6)
  assert float(terms["negatives"]) == 3.0
  intra_only, terms = liir_objective.liir_loss(
      feats=feats, ref_labels=yr, target_labels=yt, inter_weight=0,
      compact_weight=0)
  assert set(terms) == {"intra"}
