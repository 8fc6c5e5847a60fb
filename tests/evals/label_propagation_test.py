"""Label propagation: a literal numpy transcription of the reference loop,
and toy cases with known answers.

The numpy version follows videowalk@047f3f4 step by step: front-pad with L
copies of frame 0 (`code/data/vos.py:138-156`), keys = [frame 0] + padded
indices t..t+L-1 (`code/utils/test_utils.py:123-138`), additive -1e10
outside the radius on short-term keys only (`:154`, `code/utils/__init__.py:
349-362`), joint top-k of (k . q + mask) / tau, softmax, weighted sum of
soft labels written back (`code/test.py:100-148`).

`propagation_fixture.npz` holds the reference's own outputs on real DAVIS
frames. Made by a script outside the repo from ajabri/videowalk@047f3f4
(`git archive HEAD code`): its `context_index_bank`,
`mem_efficient_batched_affinity` (`code/utils/test_utils.py:123-171`) and
`MaskedAttention` (`code/utils/__init__.py:327-362`), imported with stubs
for unused imports and driven by the loop of `code/test.py:100-148`
(`benchmarks/propagation.py: load_reference, reference_propagate`), on CPU,
torch float32. Inputs: DAVIS-2016 `blackswan` frames 00000-00009 (480p),
cv2 INTER_AREA to 320x192, ImageNet-normalised, features = a fixed random
8x8x3 -> 32 patch embedding (numpy default_rng(0) normal / sqrt(192), a
stride-8 conv), L2-normalised, stored float16 (`feats` [10, 24, 40, 32];
both sides use the float16 values as float32). Labels: `00000.png` > 127,
nearest-resized to 320x192, `corrjax.evals.labels.downsample_labels(., 2)`
(`labels0` [24, 40, 2]). Outputs (float32 [10, 24, 40, 2]): `r12_c20` topk
10, radius 12, videoLen 20, temperature 0.05 (the DAVIS command); `r5_c4`
topk 10, radius 5, videoLen 4, temperature 0.05.
"""

import os

import numpy as np
import pytest

from corrjax.evals import label_propagation


_FIXTURE = os.path.join(os.path.dirname(__file__), "testdata",
                        "propagation_fixture.npz")


def _reference_numpy(feats, labels0, topk, radius, context, temperature):
  t_len, h, w, c = feats.shape
  n = h * w
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  cells = np.stack([ys.ravel(), xs.ravel()], -1).astype(np.float64)
  dist = np.sqrt(((cells[:, None] - cells[None]) ** 2).sum(-1))
  mask = np.where(dist < radius, 0.0, -1e10)  # [query, key]
  padded_feats = [feats[0]] * context + list(feats)
  lbls = [labels0] * context + [None] * t_len
  lbls[context] = labels0
  for t in range(1, t_len):
    idx = [0] + list(range(t, t + context))  # Padded indices of the keys.
    keys = np.stack([padded_feats[context]] +
                    [padded_feats[i] for i in idx[1:]]).reshape(-1, n, c)
    key_lbls = np.stack([lbls[context]] + [lbls[i] for i in idx[1:]])
    key_lbls = key_lbls.reshape(-1, n, labels0.shape[-1])
    q = padded_feats[t + context].reshape(n, c)
    sim = np.einsum("lkc,qc->qlk", keys, q)
    sim[:, 1:, :] += mask[:, None, :]
    sim = sim.reshape(n, -1) / temperature
    top = np.argsort(-sim, axis=1, kind="stable")[:, :topk]
    vals = np.take_along_axis(sim, top, 1)
    weights = np.exp(vals - vals.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    flat_lbls = key_lbls.reshape(-1, labels0.shape[-1])
    pred = np.einsum("qk,qkc->qc", weights, flat_lbls[top])
    lbls[t + context] = pred.reshape(h, w, -1)
  return np.stack(lbls[context:])


def _random_inputs(seed, t=6, h=5, w=7, c=8, k=3):
  rng = np.random.default_rng(seed)
  feats = rng.normal(size=(t, h, w, c)).astype(np.float32)
  feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
  ids = rng.integers(0, k, (h, w))
  return feats, np.eye(k, dtype=np.float32)[ids]


@pytest.mark.parametrize("topk,radius,context,temperature,chunk,block", [
    (5, 2.0, 3, 0.05, 1024, 8), (10, 12.0, 4, 0.07, 8, 8),
    (10, 12.0, 4, 0.07, 8, 4),
    (3, 1.0, 2, 0.1, 16, 8), (4, 0.0, 3, 0.05, 1024, 8),
    # Blocks not dividing the 5x7 frame, several blocks per step or one.
    (5, 2.0, 3, 0.05, 8, 2), (6, 2.5, 3, 0.05, 1, 3),
    (4, 3.0, 2, 0.05, 9, 3),
    # Radius beyond the frame: the window is clipped to the frame.
    (7, 30.0, 3, 0.05, 4, 2),
    # Fractional radius below 1: only the same cell.
    (3, 0.5, 2, 0.05, 1024, 4),
    # topk above h*w with radius 0: masked keys get weight 0 on both sides.
    (40, 0.0, 2, 0.05, 1024, 8)])
def test_matches_the_reference_loop(topk, radius, context, temperature,
                                    chunk, block):
  feats, labels0 = _random_inputs(topk)
  expected = _reference_numpy(feats, labels0, topk, radius, context,
                              temperature)
  ours = label_propagation.propagate(
      feats, labels0, topk=topk, radius=radius, context=context,
      temperature=temperature, query_chunk=chunk, block=block)
  np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("topk,radius,context,temperature,chunk", [
    (10, 12.0, 4, 0.07, 8), (3, 1.0, 2, 0.1, 7), (7, 30.0, 3, 0.05, 4),
    (40, 0.0, 2, 0.05, 1024), (40, 1.0, 2, 0.05, 16)])
def test_dense_layout_matches_the_reference_loop(topk, radius, context,
                                                 temperature, chunk):
  feats, labels0 = _random_inputs(topk + 1)
  expected = _reference_numpy(feats, labels0, topk, radius, context,
                              temperature)
  ours = label_propagation.propagate(
      feats, labels0, topk=topk, radius=radius, context=context,
      temperature=temperature, query_chunk=chunk, impl="dense")
  np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("block", [1, 3, 8])
def test_layouts_agree(block):
  # Blocked (several key-block sides) and dense on the same video: the
  # blocked layout's group selection and the dense joint top-k agree.
  feats, labels0 = _random_inputs(7, t=7, h=11, w=13, c=16, k=4)
  kw = dict(topk=6, radius=4.0, context=3, temperature=0.05)
  dense = label_propagation.propagate(feats, labels0, impl="dense",
                                      query_chunk=32, **kw)
  blocked = label_propagation.propagate(feats, labels0, impl="blocked",
                                        block=block, query_chunk=32, **kw)
  np.testing.assert_allclose(blocked, dense, atol=1e-6)


def test_auto_layout_on_cpu_is_blocked():
  assert label_propagation.dense_chunk((5, 60, 107, 256), 20, 12.0) == 0
  feats, labels0 = _random_inputs(2)
  kw = dict(topk=3, radius=2.0, context=2, temperature=0.05)
  np.testing.assert_array_equal(
      label_propagation.propagate(feats, labels0, **kw),
      label_propagation.propagate(feats, labels0, impl="blocked", **kw))
  with pytest.raises(ValueError, match="impl"):
    label_propagation.propagate(feats, labels0, impl="sparse", **kw)


def test_long_video_ring_buffer_wraps():
  # T > context + 1: the ring buffer overwrites its slots several times.
  feats, labels0 = _random_inputs(3, t=11, h=6, w=9)
  expected = _reference_numpy(feats, labels0, 4, 3.0, 3, 0.05)
  for impl in ("blocked", "dense"):
    ours = label_propagation.propagate(
        feats, labels0, topk=4, radius=3.0, context=3, temperature=0.05,
        query_chunk=8, block=4, impl=impl)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("impl", ["blocked", "dense"])
@pytest.mark.parametrize("case,topk,radius,context", [
    ("r12_c20", 10, 12.0, 20), ("r5_c4", 10, 5.0, 4)])
def test_matches_videowalk_outputs_on_davis(case, topk, radius, context,
                                            impl):
  data = np.load(_FIXTURE)
  feats = data["feats"].astype(np.float32)
  ours = np.asarray(label_propagation.propagate(
      feats, data["labels0"], topk=topk, radius=radius, context=context,
      temperature=0.05, impl=impl))
  assert ours.shape == data[case].shape
  # Max abs diff to the reference's outputs: about 1e-6 (float32 sums in
  # another order).
  np.testing.assert_allclose(ours, data[case], atol=2e-6)
  if impl == "dense":
    return
  # The numpy transcription agrees too.
  expected = _reference_numpy(feats, data["labels0"], topk, radius, context,
                              0.05)
  np.testing.assert_allclose(expected, data[case], atol=1e-4)


def test_radius_zero_uses_only_frame_zero():
  feats, labels0 = _random_inputs(0)
  a = label_propagation.propagate(feats, labels0, topk=3, radius=0.0,
                                  context=2, temperature=0.05)
  # With every short-term key masked, each frame is predicted from frame 0's
  # ground truth alone, whatever the context length.
  b = label_propagation.propagate(feats, labels0, topk=3, radius=0.0,
                                  context=5, temperature=0.05)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_single_class_stays_one_and_frame_zero_is_returned():
  feats, _ = _random_inputs(1, k=1)
  labels0 = np.ones(feats.shape[1:3] + (1,), np.float32)
  out = label_propagation.propagate(feats, labels0, topk=4, radius=3.0,
                                    context=2, temperature=0.05)
  np.testing.assert_allclose(out, 1.0, atol=1e-6)
  np.testing.assert_array_equal(out[0], labels0)


def test_translated_texture_carries_its_label():
  rng = np.random.default_rng(0)
  h, w, c, shift = 8, 12, 16, 1
  texture = rng.normal(size=(h, w + 8, c)).astype(np.float32)
  texture /= np.linalg.norm(texture, axis=-1, keepdims=True)
  # Frame t shows the texture moved right by t cells.
  feats = np.stack([np.roll(texture, t * shift, axis=1)[:, 4:4 + w]
                    for t in range(4)])
  ids = np.zeros((h, w), np.int64)
  ids[2:6, 3:6] = 1
  labels0 = np.eye(2, dtype=np.float32)[ids]
  out = np.asarray(label_propagation.propagate(
      feats, labels0, topk=1, radius=3.0, context=2, temperature=0.05))
  for t in range(4):
    # Columns < t * shift show texture that entered the view (no label).
    np.testing.assert_array_equal(out[t].argmax(-1)[:, t * shift:],
                                  ids[:, :w - t * shift])


@pytest.mark.parametrize("far,near", [((1, 0), (1, 5)), ((1, 8), (1, 3))])
def test_exact_ties_keep_frame_zero_keys_first(far, near):
  # The benchmark's tie (docs/benchmarks.md, "Ties"), in exact arithmetic:
  # small integer features, so every float path gives the same sums. For
  # the query at (1, 4) of frame 1, key C (sim 2) leads, then frame-0 keys
  # `far` (outside the radius, label 0) and `near` (inside, label 1, its
  # copies fill the bank) tie at sim 1 for the last 2 of 3 places. A stable
  # top-k over [frame 0 by index, bank slots] (the transcription) keeps
  # both frame-0 keys, whichever index is lower; the reference's torch.topk
  # did the same on these inputs (`benchmarks/propagation.py`
  # reference_propagate, torch 2.13 CPU; not run here).
  h, w = 3, 9
  feats = np.zeros((2, h, w, 4), np.float32)
  feats[..., 1] = 1
  feats[0, 0, 8] = [2, 0, 0, 0]
  feats[0][far] = feats[0][near] = feats[1, 1, 4] = [1, 0, 0, 0]
  ids = np.full((h, w), 2)
  ids[far], ids[near] = 0, 1
  labels0 = np.eye(3, dtype=np.float32)[ids]
  kw = dict(topk=3, radius=2.0, context=2, temperature=1.0)
  expected = _reference_numpy(feats, labels0, **kw)
  weights = np.exp([1.0, 1.0, 2.0]) / np.exp([1.0, 1.0, 2.0]).sum()
  np.testing.assert_allclose(expected[1, 1, 4], weights, atol=1e-6)
  for impl in ("blocked", "dense"):  # Blocked: far and near in 2 blocks.
    ours = label_propagation.propagate(feats, labels0, impl=impl,
                                       query_chunk=8, **kw)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
