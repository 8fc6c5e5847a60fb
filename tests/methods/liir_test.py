"""The LIIR method draft: smoke config, queue filling, a few steps."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax import optim
from corrjax.data import frame_pairs
from corrjax.evals import features
from corrjax.evals import network
from corrjax.methods import liir as liir_method


def _config(repo_root, arg="smoke"):
  spec = importlib.util.spec_from_file_location(
      "liir_config", os.path.join(repo_root, "configs", "liir.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_full_config_milestones(repo_root):
  c = _config(repo_root, None)
  assert c.optim.milestones == (33_334, 50_001, 66_667, 83_334)
  assert c.liir.queue_size % c.data.batch_size == 0


@pytest.mark.slow
@pytest.mark.parametrize("shift", ["permute"])  # roll: models/liir_test.py.
def test_smoke_steps_fill_the_queue_then_use_it(repo_root, shift):
  config = _config(repo_root)
  config.liir.position_shift = shift
  model = liir_method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state = jax.jit(lambda r: liir_method.init_state(
      r, model=model, tx=tx, config=config))(jax.random.key(0))
  assert state.extra["queue"]["feats"].shape == (8, 8, 8, 8)
  step = jax.jit(liir_method.bind_train_step(config, model=model, tx=tx,
                                             schedule=schedule))
  batches, source = liir_method.make_batches(config, start_step=0)
  negatives = []
  for _ in range(config.total_steps):
    state, metrics = step(state, next(batches))
    assert np.isfinite(float(metrics["loss"]))
    negatives.append(float(metrics["negatives"]))
  assert not source.bad_frames
  # Queue of 8 = 2 batches of 4: full after 2 steps, used from step 4.
  assert negatives[:3] == [0.0, 0.0, 0.0] and negatives[3] > 0
  assert int(state.extra["queue"]["count"]) == 4
  assert set(np.asarray(state.extra["queue"]["ids"])) <= set(range(4))
  kernel = state.extra["momentum"]["kernel"]
  assert not np.allclose(kernel, state.params["conv_semantic"]["kernel"])


def test_encoder_pads_and_encodes_lab_frames(repo_root):
  config = _config(repo_root)
  model = liir_method.build_model(config)
  variables = model.init(jax.random.key(1), np.zeros((1, 32, 32, 3)))
  encoder = liir_method.encoder(config)
  assert encoder.stride == 4
  fn = features.frame_features(encoder, variables, batch_size=2)
  frames = np.random.default_rng(0).integers(0, 256, (2, 30, 42, 3),
                                             dtype=np.uint8)
  out = fn(frames)
  assert out.shape == (2, 8, 11, config.model.match_dim)
  # The jit-able Lab equals the float64 numpy one to float32 precision.
  lab64 = frame_pairs.rgb_to_lab(frames / np.float32(255))
  lab32 = np.asarray(frame_pairs.rgb_to_lab(
      jnp.asarray(frames / np.float32(255)), xp=jnp))
  np.testing.assert_allclose(lab32, lab64, atol=1e-3)
  lab = (lab32 - frame_pairs.LAB_MEAN) / frame_pairs.LAB_STD
  padded = np.pad(lab, ((0, 0), (0, 2), (0, 2), (0, 0)))
  raw = np.array(model.apply(variables, padded)["match"])
  want = raw / np.linalg.norm(raw, axis=-1, keepdims=True)  # CRW protocol.
  np.testing.assert_allclose(out, want, atol=1e-5)
  # LIIR's protocol reads the raw dot products (Network.raw_features).
  net = network.from_encoder("n", encoder, variables, batch_size=2)
  np.testing.assert_allclose(net.raw_features(frames), raw, atol=1e-5)


def test_ablation_switches_and_momentum_run_factors(repo_root):
  config = _config(repo_root, "davis2016")
  assert config.data.pattern == "JPEGImages/240p/*/*.jpg"
  assert config.evals.davis_liir.protocol == "liir"
  assert config.model.use_pe
  config.liir.position_embedding = False  # The model follows (a reference).
  assert not liir_method.build_model(config).use_pe
  config.liir.update(inter_video=False, compactness=False)
  step = liir_method.bind_train_step(config, model=None, tx=None,
                                     schedule=None)
  assert (step.keywords["inter_weight"], step.keywords["compact_weight"]) == (
      0.0, 0.0)
  # main_dis.py:273-287: x(1, .9, .75, .5, .25, .125, .0625) after 55k,
  # 85k, 135k, 175k, 250k, 300k samples, i.e. from 0-based step
  # floor(T / 12) + 1.
  config = _config(repo_root, "stage2")
  _, schedule = optim.make_optimizer(config.optim, config.total_steps)
  for samples, factor in [(0, 1), (55_000, 1), (55_012, .9), (85_012, .75),
                          (135_012, .5), (175_012, .25), (250_012, .125),
                          (300_000, .125), (300_012, .0625)]:
    np.testing.assert_allclose(schedule(samples // 12), 1e-4 * factor,
                               rtol=1e-6, err_msg=str(samples))
