"""Mask-VOS networks at tiny widths: shapes, strides, Eqs. 5-9, Alg. 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.losses import mask_vos as losses
from corrjax.models import mask_vos
from corrjax.models import mask_vos_inference as inference

B, N, O, H, W = 2, 2, 2, 16, 24

def _tiny(arch="resnet10", **kwargs):
  """E and V at width 4 (ResNet-10 unless the test is about the trunk)."""
  return mask_vos.MaskVOSNet(arch=arch, width=4, key_dim=8, value_dim=16,
                             decoder_widths=(16, 8, 8), **kwargs)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  ref_frames = jnp.asarray(rng.normal(size=(B, N, H, W, 3)), jnp.float32)
  ref_masks = jnp.asarray(rng.uniform(size=(B, N, O, H, W)) > 0.5,
                          jnp.float32)
  query = jnp.asarray(rng.normal(size=(B, H, W, 3)), jnp.float32)
  return ref_frames, ref_masks, query


_VARIABLES = {}


def _tiny_variables():
  """`_tiny()`'s variables for `_inputs`' shapes (the init reads only the
  shapes, so every seed of `_inputs` gets the same), made once."""
  if not _VARIABLES:
    _VARIABLES["init"] = jax.jit(_tiny().init)(jax.random.key(0), *_inputs())
  return _VARIABLES["init"]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_training_forward_shapes(arch):
  # Shapes only, so traced, not compiled (jax.eval_shape): the values are
  # checked on ResNet-10 below (unit keys, finite loss, gradients).
  model = _tiny(arch)
  ref_frames, ref_masks, query = _inputs()
  variables = jax.eval_shape(model.init, jax.random.key(0), ref_frames,
                             ref_masks, query)
  out, _ = jax.eval_shape(lambda v: model.apply(
      v, ref_frames, ref_masks, query, train=True,
      mutable=["batch_stats"]), variables)
  assert out["object_logits"].shape == (B, O, H, W)
  assert out["coarse"].shape == (B, O, H // 8, W // 8)
  assert out["query_key"].shape == (B, H // 8, W // 8, 8)
  assert out["ref_keys"].shape == (B, N, H // 8, W // 8, 8)
  feats = jax.eval_shape(lambda v: model.apply(
      v, query, method=mask_vos.MaskVOSNet.encode), variables)
  assert feats["skip8"].shape[1:3] == (H // 8, W // 8)
  assert feats["skip4"].shape[1:3] == (H // 4, W // 4)
  # V takes 4 input channels (RGB + mask).
  kernel = variables["params"]["mask_encoder"]["trunk"]["conv1"]["kernel"]
  assert kernel.shape[2] == 4


def test_coarse_mask_is_eq8():
  # The coarse mask equals A^T Y_r computed by hand from the keys.
  model = _tiny()
  ref_frames, ref_masks, query = _inputs(1)
  variables = _tiny_variables()
  out = jax.jit(model.apply)(variables, ref_frames, ref_masks, query)
  h, w = H // 8, W // 8
  aff = losses.affinity(out["ref_keys"].reshape(B, N * h * w, -1),
                        out["query_key"].reshape(B, h * w, -1))
  small = ref_masks.reshape(B, N, O, h, 8, w, 8).mean(axis=(4, 6))
  small = jnp.moveaxis(small, 2, -1).reshape(B, N * h * w, O)
  want = jnp.moveaxis(losses.readout(aff, small).reshape(B, h, w, O), -1, 1)
  np.testing.assert_allclose(out["coarse"], want, atol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(out["query_key"], axis=-1), 1.0,
                             rtol=1e-5)


def test_gradients_reach_every_network():
  model = _tiny()
  ref_frames, ref_masks, query = _inputs(2)
  variables = _tiny_variables()

  def loss_fn(params):
    out, _ = model.apply({**variables, "params": params}, ref_frames,
                         ref_masks, query, train=True,
                         mutable=["batch_stats"])
    return losses.segmentation_loss(object_logits=out["object_logits"],
                                    labels=jnp.ones((B, H, W), jnp.int32))[0]

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
  assert np.isfinite(float(loss))
  for name in ("encoder", "mask_encoder", "decoder"):
    norm = sum(float(jnp.abs(g).sum())
               for g in jax.tree_util.tree_leaves(grads[name]))
    assert norm > 0, name


def test_segment_video_rounds():
  model = _tiny()
  variables = _tiny_variables()
  frames = np.asarray(jax.random.normal(jax.random.key(1), (3, H, W, 3)))
  first = np.zeros((H, W), np.int64)
  first[:8, :8], first[8:, 16:] = 1, 2
  for rounds in (0, 1, 2):
    probs = inference.segment_video(model, variables, frames, first, O,
                                    context=2, rounds=rounds)
    assert probs.shape == (3, O + 1, H, W)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs[0].argmax(0), first)


def test_memory_reuses_the_query_key():
  """segment_video runs E once per frame: the key predict_frame returns is
  the one memory_entry would compute for the frame's memory slot."""
  model = _tiny()
  variables = _tiny_variables()
  frames = jax.random.normal(jax.random.key(2), (2, H, W, 3))
  first = jnp.moveaxis(jax.nn.one_hot(jnp.zeros((H, W), int).at[:8].set(1),
                                      O + 1), -1, 0)
  entry = inference.memory_entry(variables, frames[0], first, model=model)
  memory = {k: v[None] for k, v in entry.items()}
  memory["valid"] = jnp.ones((1,), bool)
  out = inference.predict_frame(variables, frames[1], memory, model=model,
                                rounds=1)
  own = inference.memory_entry(variables, frames[1], out["probs"],
                               model=model)
  reused = inference.memory_entry(variables, frames[1], out["probs"],
                                  model=model, key=out["key"])
  for name in own:
    np.testing.assert_allclose(reused[name], own[name], rtol=1e-6,
                               atol=1e-6)


def test_push_keeps_first_frame():
  mem = {"keys": jnp.arange(4.0)[:, None], "valid": jnp.array(
      [True, True, False, False])}
  out = inference.push(mem, {"keys": jnp.array([9.0])})
  np.testing.assert_array_equal(out["keys"][:, 0], [0, 9, 1, 2])
  np.testing.assert_array_equal(out["valid"], [True, True, True, False])


def _conv(k, i, o):
  return k * k * i * o + o


def test_parameter_counts_of_the_paper_configuration():
  # ResNet-18 trunk without fc: 11,176,512 (tests/models/resnet_test.py);
  # V's conv1 takes a 4th (mask) channel: + 7 * 7 * 64.
  model = mask_vos.MaskVOSNet()
  variables = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, 2, 64, 64, 3)),
      jnp.zeros((1, 2, 1, 64, 64)), jnp.zeros((1, 64, 64, 3)))
  count = lambda t: sum(x.size for x in jax.tree_util.tree_leaves(t))
  params = variables["params"]
  assert count(params["encoder"]) == 11_176_512 + _conv(1, 512, 128)
  assert count(params["mask_encoder"]) == (11_176_512 + 7 * 7 * 64 +
                                           _conv(1, 512, 512))
  block = lambda i, o: _conv(3, i, o) + _conv(3, o, o) + _conv(3, i, o)
  assert count(params["decoder"]) == (
      block(1024, 512) + _conv(3, 128, 512) + block(512, 256) +
      _conv(3, 64, 256) + block(256, 128) + _conv(1, 128, 1))
