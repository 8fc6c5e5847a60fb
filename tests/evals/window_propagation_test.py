"""LIIR/MAST's window propagation against a torch transcription of
shasha521/LIIR_pytorch@21c7ba5 `evaluate_davis.py:98-129` and the eval path
of `models/colorizer_momen.py:100-207` (`--ref 0`, `--compact` or not)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrjax.evals import network as network_lib
from corrjax.evals import protocol as protocol_lib
from corrjax.evals import vos
from corrjax.evals import window_propagation as wp

def _correlation(f1, f2, patch):
  """spatial-correlation-sampler (kernel 1, stride 1, padding 0):
  out[b, dy, dx, i, j] = sum_c f1[b, c, i, j] f2[b, c, i + dy - P // 2,
  j + dx - P // 2], zero outside; reshaped [b, P * P, h * w] as
  `colorizer_momen.py:131-133`."""
  b, _, h, w = f1.shape
  r = patch // 2
  f2 = F.pad(f2, (r, r, r, r))
  out = [(f1 * f2[:, :, dy:dy + h, dx:dx + w]).sum(1)
         for dy in range(patch) for dx in range(patch)]
  return torch.stack(out, 1).reshape(b, patch * patch, h * w)


def _make_gaussian(size, sigma=1, center=None):
  """`colorizer_momen.py:29-39` without `.cuda()`."""
  x = torch.arange(start=0, end=size[3], step=1, dtype=float).repeat(
      size[1], 1).repeat(size[0], 1, 1)
  y = torch.arange(start=0, end=size[2], step=1, dtype=float).repeat(
      size[1], 1).repeat(size[0], 1, 1)
  x0, y0 = center
  return torch.exp(-4 * torch.log(torch.tensor(2.0)) * (
      (x - x0).unsqueeze(2) ** 2 + (y - y0).unsqueeze(3) ** 2)
      / sigma ** 2).float()


def _reference(feats, first, num_classes, r, compact, d=4):
  """feats [T, h, w, C]; first [h * d, w * d] -> (outs, hard maps)."""
  feats = torch.from_numpy(feats).permute(0, 3, 1, 2)[:, None]  # T,1,C,h,w
  p = 2 * r + 1
  outputs = [torch.from_numpy(first).float()[None, None]]
  outs = []
  for i in range(len(feats) - 1):
    mem_gap = 2  # evaluate_davis.py:102-106 (--ref 0).
    ref_index = list(filter(lambda x: x <= i, [0, 5])) + list(
        filter(lambda x: x > 0, range(i, i - mem_gap * 3, -mem_gap)))[::-1]
    ref_index = sorted(list(set(ref_index)))
    feats_t = feats[i + 1]
    feats_r = [feats[x] for x in ref_index]
    b, _, h, w = feats_t.shape
    nref = len(feats_r)
    corrs_pixel = [_correlation(feats_t, fr, p) for fr in feats_r]
    corr_pixel = F.softmax(torch.cat(corrs_pixel, 1), dim=1).unsqueeze(1)
    if compact:  # colorizer_momen.py:177-193, eval branch.
      corr_compact = corr_pixel[:, 0].reshape(-1, nref, p * p, h * w).permute(
          0, 1, 3, 2).contiguous().reshape(-1, nref * h * w, p * p)
      value_axis_, axis = torch.topk(corr_compact.detach(), 2, dim=-1,
                                     largest=True, sorted=False)
      value_axis = torch.softmax(value_axis_, dim=-1)
      heats = []
      for ii in range(2):
        axis_ys = axis[:, :, ii:ii + 1] // p
        axis_xs = axis[:, :, ii:ii + 1] % p
        heats.append(_make_gaussian(
            size=[axis_ys.size(0), axis_ys.size(1), p, p],
            center=[axis_xs, axis_ys]))
      corr_heat = (heats[0].flatten(2) * value_axis[:, :, 0:1]
                   + heats[1].flatten(2) * value_axis[:, :, 1:2])
      value_axis_, _ = torch.max(value_axis_, dim=-1, keepdim=True)
      indic = value_axis_ > 0.1
      corr_pixel = corr_compact * (~indic) + corr_heat * indic
      corr_pixel = corr_pixel.reshape(b, nref, h * w, p * p).permute(
          0, 1, 3, 2).contiguous().reshape(b, nref * p * p, h * w).unsqueeze(1)
    # prep (:88-94): [::D, ::D], one-hot; unfold (:198-203).
    qr = [F.one_hot(outputs[x][:, 0, ::d, ::d].long(), num_classes)
          .permute(0, 3, 1, 2).float() for x in ref_index]
    image_uf = [F.unfold(x, kernel_size=p, padding=r).reshape(
        b, num_classes, p * p, h * w) for x in qr]
    image_uf = torch.cat(image_uf, 2)
    if compact:
      image_uf[:, 1:] *= 1.05
    out = (corr_pixel * image_uf).sum(2).reshape(b, num_classes, h, w)
    outs.append(out[0].permute(1, 2, 0).numpy())
    up = F.interpolate(out, (h * d, w * d), mode="bilinear")
    outputs.append(torch.argmax(up, 1, keepdim=True).float())
  return np.stack(outs), np.stack([o[0, 0].numpy() for o in outputs])


def test_reference_frames():
  assert wp.reference_frames(1) == [0]
  assert wp.reference_frames(2) == [0, 1]
  assert wp.reference_frames(5) == [0, 2, 4]
  assert wp.reference_frames(7) == [0, 2, 4, 5, 6]
  assert wp.reference_frames(20) == [0, 5, 15, 17, 19]


@pytest.mark.parametrize("compact", [False, True])
def test_matches_the_reference(compact):
  rng = np.random.default_rng(0)
  t, h, w, c, k, r = 9, 5, 7, 6, 3, 3
  # Sharp enough that some peaks pass 0.1 and some do not.
  feats = (rng.normal(size=(t, h, w, c)) * 1.2).astype(np.float32)
  first = rng.integers(0, k, (h * 4, w * 4))
  want_soft, want_maps = _reference(feats, first, k, r, compact)
  soft, maps = wp.propagate(
      feats, first, k, window=r, compact_threshold=0.1 if compact else 1.0,
      foreground_boost=1.05 if compact else 1.0, tile=4)  # 2 x 2 blocks.
  np.testing.assert_allclose(soft, want_soft, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(maps, want_maps)
  if compact:  # G replaced some probabilities, not all.
    _, plain = wp.propagate(feats, first, k, window=r, compact_threshold=1.0,
                            foreground_boost=1.05)
    assert (plain != maps).any()


def test_tile_does_not_change_the_result():
  rng = np.random.default_rng(1)
  feats = rng.normal(size=(4, 6, 5, 4)).astype(np.float32)
  first = rng.integers(0, 2, (24, 20))
  a, _ = wp.propagate(feats, first, 2, window=2, tile=4)
  b, _ = wp.propagate(feats, first, 2, window=2, tile=3)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_an_underflowing_softmax_breaks_ties_as_the_reference():
  """Sharp features: the joint softmax underflows to exactly 0 away from
  each query's peak, so the compactness prior's second peak is a tie at 0.
  Over the reference's 29 x 29 window (841 entries) torch.topk returns the
  first window position in row-major order (the second when the peak is
  there), and so must we, for every tile (a regression: the tie was once
  broken at a patch cell outside the window, so results moved with
  `tile`). torch flushes denormals to zero here as XLA does on CPU, or the
  two disagree on which probabilities are exactly 0."""
  rng = np.random.default_rng(2)
  t, h, w, c, k, r = 3, 18, 17, 8, 3, 14  # Windows inside the frame.
  feats = (rng.normal(size=(t, h, w, c)) * 30).astype(np.float32)
  first = rng.integers(0, k, (h * 4, w * 4))
  f = torch.from_numpy(feats).permute(0, 3, 1, 2)
  probs = F.softmax(_correlation(f[1:2], f[0:1], 2 * r + 1), dim=1)
  assert (probs == 0).float().mean() > 0.9 and (probs.amax(1) > 0.1).all()
  # As XLA on CPU, denormals are 0. The flag is per thread (MXCSR), so the
  # reference runs on this thread alone.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  torch.set_flush_denormal(True)
  try:
    want_soft, want_maps = _reference(feats, first, k, r, compact=True)
  finally:
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)
  for tile in (4, 8):
    soft, maps = wp.propagate(feats, first, k, window=r, tile=tile,
                              compact_threshold=0.1, foreground_boost=1.05)
    # Dot products of ~1e3 round differently in float32 here and in torch
    # (~4e-5 in the probabilities); a tie broken elsewhere moves ~0.3.
    np.testing.assert_allclose(soft, want_soft, rtol=0, atol=2e-4)
    np.testing.assert_array_equal(maps, want_maps)


def test_gaussian_replaces_a_sharp_peak():
  # One reference, one clear match at offset (+1, 0): the output is the
  # unnormalised Gaussian mass on the labels, as `make_gaussian`.
  probs = np.zeros((1, 1, 1, 9), np.float32)
  probs[..., 7] = 0.9  # (dy, dx) = (2, 1) of a 3 x 3 window.
  probs[..., 4] = 0.1
  inside = np.ones(9, bool)
  out = np.asarray(wp._compact(probs, inside, 3, 0.1))[0, 0, 0].reshape(3, 3)
  w = np.exp([0.9, 0.1]) / np.exp([0.9, 0.1]).sum()
  yy, xx = np.mgrid[:3, :3]
  want = sum(wi * np.exp(-4 * math.log(2) * ((xx - cx) ** 2 + (yy - cy) ** 2))
             for wi, (cy, cx) in zip(w, [(2, 1), (1, 1)]))
  np.testing.assert_allclose(out, want, rtol=1e-6)
  kept = np.asarray(wp._compact(probs, inside, 3, 0.95))
  np.testing.assert_array_equal(kept, probs)


def test_protocol_kind_and_hash():
  crw = protocol_lib.Propagation()
  assert crw.as_dict() == dict(topk=10, radius=12.0, context=20,
                               temperature=0.05, crop_size=-1)
  liir = protocol_lib.Propagation.from_config(
      {"protocol": "liir", "topk": 10, "window": 14})
  assert liir.kind == "liir"
  assert liir.as_dict() == dict(kind="liir", window=14, compact_threshold=0.1,
                                foreground_boost=1.05, crop_size=-1)
  assert protocol_lib.short_hash(crw.as_dict()) != protocol_lib.short_hash(
      liir.as_dict())
  with pytest.raises(ValueError, match="protocol"):
    protocol_lib.Propagation(kind="mast")


def test_vos_uses_the_raw_features_under_the_liir_protocol():
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 256, (4, 16, 20, 3), dtype=np.uint8)
  masks = np.zeros((4, 16, 20), np.int32)
  masks[0, 4:12, 4:12] = 1
  video = vos.Video("v", frames, masks)
  raw = rng.normal(size=(4, 4, 5, 3)).astype(np.float32) * 3
  unit = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
  net = network_lib.Network(label="n", features=lambda f: unit, stride=4,
                                raw_features=lambda f: raw)
  proto = protocol_lib.Propagation(kind="liir", window=2)
  got = vos.predict(net, video, proto)
  first = np.zeros((16, 20), np.int32)
  first[4:12, 4:12] = 1
  _, want = wp.propagate(raw, first, 2, window=2)
  np.testing.assert_array_equal(got, np.concatenate([masks[:1], want[1:]]))
  summary = vos.evaluate([video], net, proto, log=lambda s: None)
  assert 0 <= summary["global"]["J&F-Mean"] <= 1


def test_a_sharp_self_match_copies_the_labels():
  # Frame 1 equals frame 0 and every cell has its own large feature: each
  # query matches itself alone, so it receives its own label. (Later frames
  # read their references' labels back as `[::4, ::4]` of the bilinearly
  # upsampled map, `colorizer_momen.py:90`, which mixes in the cells above
  # and to the left: convex top-left corners erode by a cell per frame, as
  # in the reference.)
  rng = np.random.default_rng(3)
  cells = rng.normal(size=(6, 8, 16)).astype(np.float32) * 8
  feats = np.repeat(cells[None], 2, 0)
  first = np.zeros((24, 32), np.int64)
  first[4:16, 8:24] = 1
  first[16:, :8] = 2
  onehot = np.eye(3, dtype=np.float32)[first[::4, ::4]]
  soft, _ = wp.propagate(feats, first, 3, window=3, compact_threshold=1.0,
                         foreground_boost=1.0)
  np.testing.assert_allclose(soft[0], onehot, atol=1e-6)
