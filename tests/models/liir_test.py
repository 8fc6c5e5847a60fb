"""Tests for corrjax.models.liir: shapes, init, PE resize, position shift."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.models import liir

TINY = dict(width=4, widths=(4, 8, 8, 8), pe_size=(16, 16), match_dim=6,
            semantic_dim=5)


def _model_and_variables(size=32, randomize=True, **kwargs):
  model = liir.LIIRNet(**{**TINY, **kwargs})
  variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  variables = jax.tree_util.tree_map(np.asarray, variables)
  if randomize:  # Zero PE and zero gammas would hide both from the checks.
    rng = np.random.default_rng(0)
    flat = flax.traverse_util.flatten_dict(variables)
    for path, value in flat.items():
      if path[-1] in ("scale", "pos_embed"):
        flat[path] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        if path[-1] == "pos_embed":
          flat[path] = rng.normal(size=value.shape).astype(np.float32)
    variables = flax.traverse_util.unflatten_dict(flat)
  return model, variables


def test_shapes_and_strides():
  model, variables = _model_and_variables(randomize=False)
  out = jax.eval_shape(model.apply, variables, jnp.zeros((2, 64, 64, 3)))
  assert {k: v.shape for k, v in out.items()} == {
      "trunk": (2, 16, 16, 8), "match": (2, 16, 16, 6),
      "semantic": (2, 8, 8, 5)}
  out = jax.eval_shape(model.apply, variables, jnp.zeros((1, 60, 44, 3)))
  assert out["match"].shape == (1, 15, 11, 6)
  assert out["semantic"].shape == (1, 8, 6, 5)


def test_reference_layout_and_init():
  model = liir.LIIRNet()
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 256, 256, 3))))
  params = variables["params"]
  assert params["pos_embed"].shape == (1, 128, 128, 64)
  assert params["post_convolution"]["kernel"].shape == (3, 3, 256, 64)
  assert params["conv_semantic"]["kernel"].shape == (3, 3, 256, 128)
  assert params["encoder"]["layer4"]["block0"]["conv1"]["kernel"].shape == (
      3, 3, 256, 256)
  out = jax.eval_shape(model.apply, variables,
                       jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32))
  assert out["match"].shape == (2, 64, 64, 64)
  assert out["semantic"].shape == (2, 32, 32, 128)
  _, small = _model_and_variables(randomize=False)
  assert not np.any(small["params"]["pos_embed"])
  for stage in ("layer1", "layer4"):
    for block in small["params"]["encoder"][stage].values():
      assert not np.any(block["bn2"]["scale"])


def test_embedding_resize_matches_torch_bicubic():
  torch = pytest.importorskip("torch")
  model, variables = _model_and_variables()
  got = model.apply(variables, (24, 20), method=liir.LIIRNet.embedding)
  pe = torch.from_numpy(variables["params"]["pos_embed"]).permute(0, 3, 1, 2)
  want = torch.nn.functional.interpolate(pe, size=(24, 20), mode="bicubic",
                                         align_corners=False)
  np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want,
                             atol=1e-5)
  same = model.apply(variables, (16, 16), method=liir.LIIRNet.embedding)
  np.testing.assert_array_equal(same, variables["params"]["pos_embed"])


def test_roll_shift_is_half_a_period():
  pe = jnp.arange(2 * 4 * 6 * 1, dtype=jnp.float32).reshape(2, 4, 6, 1)[:1]
  rolled = liir.shift_embedding(pe, "roll")
  np.testing.assert_array_equal(rolled[0, 2, 3], pe[0, 0, 0])
  np.testing.assert_array_equal(liir.shift_embedding(pe, "none"), pe)
  with pytest.raises(ValueError, match="position shift"):
    liir.shift_embedding(pe, "shuffle")


def test_permute_shift_moves_every_block():
  pe = jax.random.normal(jax.random.key(0), (1, 16, 24, 3))
  out = liir.shift_embedding(pe, "permute", jax.random.key(1), patch=8)
  blocks = lambda x: np.asarray(x).reshape(2, 8, 3, 8, 3).transpose(
      0, 2, 1, 3, 4).reshape(6, -1)
  before, after = blocks(pe), blocks(out)
  # A permutation of whole blocks with no block left in place.
  assert sorted(map(tuple, before)) == sorted(map(tuple, after))
  assert not any(np.array_equal(before[i], after[i]) for i in range(6))
  again = liir.shift_embedding(pe, "permute", jax.random.key(1), patch=8)
  np.testing.assert_array_equal(out, again)
  other = liir.shift_embedding(pe, "permute", jax.random.key(2), patch=8)
  assert not np.array_equal(out, other)
  with pytest.raises(ValueError, match="multiple of 8"):
    liir.shift_embedding(pe[:, :12], "permute", jax.random.key(1))
  with pytest.raises(ValueError, match="PRNG key"):
    liir.shift_embedding(pe, "permute")


def _aligned_scores(query, keys):
  """<query(q), keys(q)>: the d = 0 logit of the 7x7 window."""
  return np.sum(np.asarray(query) * np.asarray(keys), -1)


def test_position_shift_changes_only_the_negatives():
  # Constant appearance: every feature difference across cells comes from
  # the position embedding (and the frame border).
  model, variables = _model_and_variables()
  frame = jnp.full((2, 32, 32, 3), 0.3)
  momentum = jax.tree_util.tree_map(lambda x: x * 0.9,
                                    liir.init_momentum_head(
                                        variables["params"]))
  pair = jax.jit(functools.partial(liir.pair_features, model),
                 static_argnames=("train", "position_shift"))
  plain, _ = pair(variables, momentum, frame, frame, position_shift="none")
  shifted, _ = pair(variables, momentum, frame, frame, position_shift="roll")
  for key in ("target_match", "target_semantic", "reference_match",
              "reference_keys"):
    np.testing.assert_array_equal(plain[key], shifted[key])
  np.testing.assert_array_equal(plain["queue_keys"], plain["reference_keys"])
  # As designed: the shifted keys are those of a model whose embedding is
  # rolled by half the stem grid (16 x 16 here, so no resize).
  params = dict(variables["params"])
  params["pos_embed"] = np.roll(params["pos_embed"], (8, 8), axis=(1, 2))
  rolled = {"params": params, "batch_stats": variables["batch_stats"]}
  manual, _ = pair(rolled, momentum, frame, frame, position_shift="none")
  np.testing.assert_allclose(shifted["queue_keys"], manual["reference_keys"],
                             atol=1e-5)
  # Without the shift, a same-content negative at an aligned position
  # scores exactly like the positive; with it, it does not.
  intra = _aligned_scores(plain["target_semantic"], plain["reference_keys"])
  np.testing.assert_allclose(
      _aligned_scores(plain["target_semantic"], plain["queue_keys"]), intra)
  inter = _aligned_scores(shifted["target_semantic"], shifted["queue_keys"])
  assert np.abs(inter - intra).max() > 0.1 * np.abs(intra).max()


def test_train_mode_updates_batch_stats_and_momentum():
  model, variables = _model_and_variables()
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  momentum = liir.init_momentum_head(variables["params"])
  _, stats = liir.pair_features(model, variables, momentum, x, -x,
                                train=True)
  before = variables["batch_stats"]["encoder"]["bn1"]["mean"]
  assert not np.allclose(stats["encoder"]["bn1"]["mean"], before)
  params = {"kernel": np.ones((3, 3, 8, 5), np.float32),
            "bias": np.ones(5, np.float32)}
  ema = jax.tree_util.tree_map(np.zeros_like, params)
  new = liir.momentum_update(ema, params, 0.999)
  np.testing.assert_allclose(new["kernel"], 0.001, rtol=1e-5)
