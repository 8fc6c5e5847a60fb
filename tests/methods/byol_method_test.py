"""The global-BYOL train step: 1 vs 4 devices, retracing, loss, EMA order.

The expected loss and target update are recomputed here from deepmind-
research@f5de0ed `byol/byol_experiment.py:197-250` (online and target
forwards of each view in train mode, 2 - 2 cos both ways, batch mean) and
`:338-343` (target += (1 - tau)(online_after_update - target)).
"""

import functools
import os

import chex
import jax
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import optim
from corrjax import sharding
from corrjax import train
from corrjax.data import normalization
from corrjax.methods import byol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _config():
  config = config_defaults.load(os.path.join(REPO, "configs/byol.py:smoke"))
  config.optim.learning_rate, config.optim.warmup_steps = 0.1, 0
  return config


def _batches(config, n):
  rng = np.random.default_rng(1)
  b, s = config.data.batch_size, config.data.crop_size
  return [{"view1": rng.integers(0, 256, (b, s, s, 3), np.uint8),
           "view2": rng.integers(0, 256, (b, s, s, 3), np.uint8)}
          for _ in range(n)]


def _run(config, devices, batches, initial):
  traces = []

  def counting_step(*args, **kwargs):
    traces.append(1)
    return byol.train_step(*args, **kwargs)

  mesh = sharding.make_mesh((-1,), ("data",), devices)
  model = byol.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state_sh = jax.tree_util.tree_map(
      lambda a: a.sharding, train.abstract_state(config, mesh, model, tx))
  state = jax.device_put(jax.tree_util.tree_map(lambda x: x.copy(), initial),
                         state_sh)  # A copy: the step donates its input.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(byol, "train_step", counting_step)
    step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  states, metrics = [jax.device_get(state)], []
  for batch in batches:
    state, m = step(state, sharding.shard_host_batch(
        batch, sharding.batch_sharding(mesh)))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return states, (state, state_sh), metrics, len(traces)


@functools.lru_cache(maxsize=None)
def _runs():
  config = _config()
  batches = _batches(config, 2)
  initial = jax.jit(functools.partial(
      byol.init_state, model=byol.build_model(config),
      tx=optim.make_optimizer(config.optim, config.total_steps)[0],
      config=config))(jax.random.key(config.seed))
  return (config, batches, _run(config, jax.devices()[:1], batches, initial),
          _run(config, jax.devices(), batches, initial))


@pytest.mark.slow
def test_four_devices_equal_one_device_and_step_traces_once():
  _, _, (one, _, m1, t1), (four, (state, state_sh), m4, t4) = _runs()
  for a, b in zip(one, four):
    chex.assert_trees_all_close(
        (a.params, a.batch_stats, a.target_params, a.target_batch_stats,
         a.step),
        (b.params, b.batch_stats, b.target_params, b.target_batch_stats,
         b.step), atol=1e-5, rtol=1e-5)
    # Momentum buffers hold raw gradients (global norm ~20 here): the
    # summation order changes them by ~1e-5 relative.
    chex.assert_trees_all_close(a.opt_state, b.opt_state, atol=1e-4,
                                rtol=1e-4)
  np.testing.assert_allclose([m["loss"] for m in m1],
                             [m["loss"] for m in m4], atol=1e-5)
  assert t1 == t4 == 1
  assert all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in zip(
      jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state_sh)))


@pytest.mark.slow
def test_first_loss_is_the_symmetric_cosine_regression():
  config, batches, _, (states, _, metrics, _) = _runs()
  model, s0 = byol.build_model(config), states[0]
  x1, x2 = (normalization.normalize(batches[0][k], name="imagenet")
            for k in ("view1", "view2"))
  # Every forward normalises with its own batch statistics (train mode).
  preds = [np.asarray(model.apply(
      {"params": s0.params, "batch_stats": s0.batch_stats}, x, train=True,
      mutable=["batch_stats"])[0]["pred"]) for x in (x1, x2)]
  targets = [np.asarray(model.apply(
      {"params": s0.target_params, "batch_stats": s0.target_batch_stats}, x,
      train=True, method=model.project, mutable=["batch_stats"])[0]["proj"])
             for x in (x1, x2)]
  unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
  cos_12 = np.sum(unit(preds[0]) * unit(targets[1]), axis=1)
  cos_21 = np.sum(unit(preds[1]) * unit(targets[0]), axis=1)
  expected = np.mean(2 - 2 * cos_12) + np.mean(2 - 2 * cos_21)
  assert float(metrics[0]["loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_target_moves_towards_the_updated_online_network():
  config, _, _, (states, _, metrics, _) = _runs()
  for k, (before, after) in enumerate(zip(states, states[1:])):
    tau = float(optim.ema_momentum(k, config.total_steps, 0.996))
    assert float(metrics[k]["tau"]) == pytest.approx(tau)
    expected = jax.tree_util.tree_map(
        lambda t, o, tau=tau: t + (1 - tau) * (o - t), before.target_params,
        {n: after.params[n] for n in byol.TARGET_KEYS})
    chex.assert_trees_all_close(after.target_params, expected, atol=1e-6)
  assert "predictor" in states[0].params
  assert "predictor" not in states[0].target_params


def test_missing_predictor_is_a_clear_error():
  config = _config()
  config.model.prediction_hidden_dim = 0
  with pytest.raises(ValueError, match="BYOL needs a predictor"):
    byol.init_state(jax.random.key(0), model=byol.build_model(config),
                    tx=optim.make_optimizer(config.optim, 4)[0], config=config)
