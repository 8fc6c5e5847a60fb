"""Mask-VOS method: the smoke config's step on 1 and 4 fake CPU devices,
Eq. 16's weights (the correspondence-only phase: mask_vos_schedule_test)."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import optim
from corrjax import sharding
from corrjax import train
from corrjax.evals import protocol as protocol_lib
from corrjax.methods import mask_vos

def _config(repo_root, seg_weight=1.0):
  config = config_defaults.load(f"{repo_root}/configs/mask_vos.py:smoke")
  # SGD: Adam's first steps are ~lr * sign(grad), which turns summation-
  # order noise in near-zero gradients into lr-sized differences.
  config.optim.name, config.optim.learning_rate = "sgd", 0.1
  config.loss.seg_weight = seg_weight
  return config


def _batch(config, seed=0):
  """A batch with pseudo masks: ids 0..O in blocks, all objects valid."""
  rng = np.random.default_rng(seed)
  d = config.data
  b, s, n, o = d.batch_size, d.crop_size, d.num_refs + 1, d.num_objects
  masks = np.zeros((b, n, s, s), np.int32)
  for k in range(1, o + 1):
    y, x = rng.integers(0, s - 8, 2)
    masks[:, :, y:y + 8, x:x + 8] = k
  frames = lambda t: rng.integers(0, 256, (b, t, s, s, 3), np.uint8)  # pylint: disable=g-long-lambda
  return {"seg_frames": frames(n), "seg_masks": masks,
          "object_valid": np.ones((b, o), bool),
          "short_frames": frames(2), "long_frames": frames(2)}


def _steps(config, devices, batches):
  mesh = sharding.make_mesh((-1,), ("data",), devices)
  model = mask_vos.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state, state_sh = train.create_state(config, mesh, model, tx)
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  metrics = []
  for batch in batches:
    state, m = step(state, sharding.shard_host_batch(
        batch, sharding.batch_sharding(mesh)))
    metrics.append(jax.device_get(m))
  return jax.device_get(state), metrics


@functools.lru_cache(maxsize=None)
def _runs(repo_root):
  config = _config(repo_root)
  batches = [_batch(config, 0), _batch(config, 1)]
  return (_steps(config, jax.devices()[:1], batches),
          _steps(config, jax.devices(), batches))


@pytest.mark.slow
def test_four_devices_equal_one_device(repo_root):
  assert jax.device_count() == 4
  (one, m1), (four, m4) = _runs(repo_root)
  chex.assert_trees_all_close(
      (one.params, one.batch_stats, one.opt_state),
      (four.params, four.batch_stats, four.opt_state), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose([m["loss"] for m in m1],
                             [m["loss"] for m in m4], rtol=1e-5)
  assert int(four.step) == 2


@pytest.mark.slow
def test_loss_is_eq16_with_the_config_weights(repo_root):
  (_, metrics), _ = _runs(repo_root)
  for m in metrics:
    for name in ("loss", "seg_loss", "short_loss", "long_loss"):
      assert np.isfinite(m[name]), name
    assert m["seg_loss"] > 0
    np.testing.assert_allclose(
        m["loss"], m["seg_loss"] + 0.1 * m["short_loss"] +
        0.5 * m["long_loss"], rtol=1e-5)


def test_crop_size_must_be_a_multiple_of_8(repo_root):
  config = _config(repo_root)
  config.data.crop_size = 36
  with pytest.raises(ValueError, match="multiple of 8"):
    mask_vos.bind_train_step(config, model=None, tx=None, schedule=None)


@pytest.mark.parametrize("arg", ["", "arch=resnet50", "davis2016", "smoke"])
def test_configs_expose_the_papers_knobs(repo_root, arg):
  spec = f"{repo_root}/configs/mask_vos.py" + (f":{arg}" if arg else "")
  c = config_defaults.load(spec)
  assert c.model.arch == {"arch=resnet50": "resnet50",
                          "smoke": "resnet10"}.get(arg, "resnet18")
  for name in ("seg_weight", "short_weight", "long_weight", "temperature"):
    assert name in c.loss
  assert c.data.num_refs == 2 and c.data.long_gap == 5  # N, |t - t'|.
  assert c.inference.rounds == 2  # R.
  assert c.clustering.max_fraction == 0.4
  assert c.data.num_objects <= c.clustering.num_clusters
  if not arg or "50" in arg:
    assert (c.clustering.num_clusters, c.clustering.num_steps) == (5, 100)
    assert (c.loss.short_weight, c.loss.long_weight) == (0.1, 0.5)
    assert c.schedule.corr_steps == 300 * 217
    assert c.schedule.recluster_every == 10 * 217


def test_mask_predictor_works_at_the_protocols_crop_size(repo_root):
  config = config_defaults.load(f"{repo_root}/configs/mask_vos.py:smoke")
  config.inference.rounds = 1
  predict = mask_vos.mask_predictor(config, mask_vos.initial_tree(config))
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (3, 20, 44, 3), np.uint8)
  first = np.zeros((20, 44), np.int32)
  first[4:12, 8:30] = 1
  first[0, 0] = 255
  protocol = dataclasses.replace(
      protocol_lib.Propagation.from_config(config.evals.synthetic),
      crop_size=16, context=1)
  ids = predict(frames, first, protocol)
  assert ids.shape == (3, 20, 44) and ids.dtype == np.int32
  np.testing.assert_array_equal(ids[0], first)
  assert set(np.unique(ids[1:])) <= {0, 1}
