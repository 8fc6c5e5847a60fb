"""One LIIR objective end to end against the torch transcription.

Torch side (float64): LIIR_pytorch's MAST as transcribed in
tests/convert_liir_test.py, in train mode (batch statistics), run as
`MAST.forward` (`models/mast_momen.py:110-125`: momentum update first, then
target and reference through the trunk, momentum keys under no_grad) and
`compute_lphoto` (`main_dis.py:215-248`) with the loss transcriptions of
tests/losses/liir_test.py and a queue holding other videos. JAX side: the
converted weights through models/liir.py `pair_features` and
losses/liir_objective.py. Loss and gradients must agree.
"""

import importlib.util
import os

import jax
import numpy as np
import pytest

from corrjax import convert
from corrjax.losses import liir_inter
from corrjax.losses import liir_objective
from corrjax.models import liir

torch = pytest.importorskip("torch")

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relative):
  spec = importlib.util.spec_from_file_location(
      relative.replace("/", "_")[:-3], os.path.join(TESTS, relative))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_objective_and_gradients_match_torch():
  ref_model = _load("convert_liir_test.py")
  ref_losses = _load("losses/liir_test.py")
  m = 0.99
  mast = ref_model._random_mast(seed=4)  # pylint: disable=protected-access
  state = {k: v.numpy().copy() for k, v in mast.state_dict().items()}
  variables = convert.convert_state_dict({"state_dict": state}, "liir")[0]
  mast = mast.double().train()

  rng = np.random.default_rng(5)
  b, size = 2, 64
  ref_x = rng.normal(size=(b, size, size, 3)).astype(np.float32)
  tgt_x = rng.normal(size=(b, size, size, 3)).astype(np.float32)
  ref_y = rng.uniform(-.5, .5, (b, size, size, 1)).astype(np.float32)
  tgt_y = rng.uniform(-.5, .5, (b, size, size, 1)).astype(np.float32)
  queue = rng.normal(size=(6, 8, 8, 8)).astype(np.float32)
  queue_ids = np.array([3, 1, 7, 1, 3, 9])
  video_ids = np.array([1, 3])

  # Torch: mast_momen.py:110-125, then compute_lphoto.
  t = ref_losses._t  # pylint: disable=protected-access
  with torch.no_grad():
    for q, k in zip(mast.conv_semantic.parameters(),
                    mast.conv_semantic_k.parameters()):
      k.data = k.data * m + q.data * (1. - m)
  fe = mast.feature_extraction
  feats_t_tep = fe(t(tgt_x))
  feats_t = mast.post_convolution(feats_t_tep)
  feats_t_sem = mast.conv_semantic(feats_t_tep)
  feats_r = mast.post_convolution(fe(t(ref_x)))
  with torch.no_grad():
    feats_r_sem = mast.conv_semantic_k(fe(t(ref_x)))
  loss4, corr = ref_losses.torch_intra(feats_t, feats_r, t(ref_y), t(tgt_y))
  loss8, _ = ref_losses.torch_inter(
      feats_t_sem, feats_r_sem, t(queue), list(queue_ids), list(video_ids),
      t(ref_y), t(tgt_y))
  compact = ref_losses.torch_compact(corr, 1, 13, 16, 16)
  total = loss4 + 0.5 * loss8 + compact
  total.backward()

  # JAX.
  model = liir.LIIRNet(width=4, widths=(4, 8, 16, 16), pe_size=(16, 16),
                       match_dim=6, semantic_dim=8)
  ema = liir.momentum_update(variables["momentum"]["conv_semantic_k"],
                             variables["params"]["conv_semantic"], m)
  mask = liir_inter.negative_mask(queue_ids, video_ids)

  def loss_fn(params):
    feats, _ = liir.pair_features(
        model, {"params": params, "batch_stats": variables["batch_stats"]},
        ema, tgt_x, ref_x, train=True)
    return liir_objective.liir_loss(
        feats=feats, ref_labels=ref_y, target_labels=tgt_y, negatives=queue,
        negatives_mask=mask)

  (loss, terms), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables["params"])
  for name, want in (("intra", loss4), ("inter", loss8),
                     ("compact", compact)):
    print(f"{name}: ours {float(terms[name]):.7f} torch {want.item():.7f}")
    np.testing.assert_allclose(terms[name], want.item(), rtol=2e-4,
                               err_msg=name)
  np.testing.assert_allclose(loss, total.item(), rtol=2e-4)
  checks = (
      (grads["post_convolution"]["kernel"],
       mast.post_convolution.weight.grad.numpy().transpose(2, 3, 1, 0)),
      (grads["conv_semantic"]["kernel"],
       mast.conv_semantic.weight.grad.numpy().transpose(2, 3, 1, 0)),
      (grads["pos_embed"],
       fe.pos_embed1.grad.numpy().transpose(0, 2, 3, 1)),
      (grads["encoder"]["conv1"]["kernel"],
       fe.conv1.weight.grad.numpy().transpose(2, 3, 1, 0)))
  for ours, want in checks:
    scale = np.abs(want).max()
    print(f"grad max abs diff {np.abs(np.asarray(ours) - want).max():.2e} "
          f"(max |grad| {scale:.2e})")
    np.testing.assert_allclose(ours, want, atol=2e-3 * scale)
