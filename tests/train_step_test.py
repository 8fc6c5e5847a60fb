"""The sharded FC train step: 1 vs 4 devices, shardings, retracing."""

import functools
import os

import chex
import jax
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import methods
from corrjax import optim
from corrjax import sharding
from corrjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  return config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))


def _batches(config, n):
  rng = np.random.default_rng(0)
  b, s = config.data.batch_size, config.data.crop_size
  out = []
  for _ in range(n):
    x1, y1 = rng.uniform(0, 0.4, (2, b))
    boxes = [np.stack([x1, y1, x1 + 0.5, y1 + 0.5], 1).astype(np.float32)
             for _ in range(2)]
    boxes[1][:, :2] += 0.05
    boxes[1][:, 2:] += 0.05
    out.append({"view1": rng.integers(0, 256, (b, s, s, 3), np.uint8),
                "view2": rng.integers(0, 256, (b, s, s, 3), np.uint8),
                "box1": boxes[0], "box2": boxes[1]})
  return out


def _run(config, devices, batches):
  """Trains on `batches`; returns host copies of the state after each step,
  the shardings, the metrics and how often the step was traced."""
  method = methods.get(config.method)
  traces = []

  def counting_step(*args, **kwargs):
    traces.append(1)
    return method.train_step(*args, **kwargs)

  mesh = sharding.make_mesh((-1,), ("data",), devices)
  model = method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state, state_sh = train.create_state(config, mesh, model, tx)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(method, "train_step", counting_step)
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
  # SGD: Adam's first steps are ~lr * sign(grad), which turns 1e-9 summation
  # -order noise in near-zero gradients into lr-sized differences.
  config.optim.name, config.optim.learning_rate = "sgd", 0.1
  batches = _batches(config, 3)
  return (config, _run(config, jax.devices()[:1], batches),
          _run(config, jax.devices(), batches))


def _weights(state):
  return (state.params, state.batch_stats, state.target_params,
          state.target_batch_stats, state.opt_state, state.step)


@pytest.mark.slow
def test_four_devices_equal_one_device():
  assert jax.device_count() == 4
  _, (one, _, m1, _), (four, _, m4, _) = _runs()
  for a, b in zip(one, four):
    chex.assert_trees_all_close(_weights(a), _weights(b), atol=1e-5,
                                rtol=1e-5)
  np.testing.assert_allclose([m["loss"] for m in m1],
                             [m["loss"] for m in m4], atol=1e-5)
  assert np.all(np.isfinite([m["loss"] for m in m4]))
  assert int(four[-1].step) == 3


@pytest.mark.slow
def test_state_keeps_its_shardings_and_step_traces_once():
  _, _, (_, (state, state_sh), _, traces) = _runs()
  assert all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in zip(
      jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state_sh)))
  assert traces == 1


@pytest.mark.slow
def test_target_is_the_ema_of_online_weights():
  config, (states, _, metrics, _), _ = _runs()
  # Step k (0-based) mixes with tau_k = ema_momentum(k) the target after
  # step k - 1 and the online weights before step k.
  for k in (0, 1, 2):
    tau = float(optim.ema_momentum(k, config.total_steps, 0.99))
    assert metrics[k]["tau"] == pytest.approx(tau)
    before, after = states[k], states[k + 1]
    expected = jax.tree_util.tree_map(
        lambda t, o, tau=tau: t * tau + o * (1 - tau), before.target_params,
        {n: before.params[n] for n in methods.fine_grained.TARGET_KEYS})
    chex.assert_trees_all_close(after.target_params, expected, atol=1e-6)
  # The online weights moved; at init the target equals the online net.
  chex.assert_trees_all_equal(states[0].target_params["encoder"],
                              states[0].params["encoder"])
  assert not np.allclose(states[3].params["projector"]["linear2"]["kernel"],
                         states[0].params["projector"]["linear2"]["kernel"])


def test_batch_not_divisible_by_devices_is_a_clear_error():
  mesh = sharding.make_mesh((-1,), ("data",))
  with pytest.raises(ValueError, match="not divisible by the 4 devices"):
    sharding.check_batch_size(6, mesh)


def test_mesh_shapes():
  assert sharding.make_mesh((-1,), ("data",)).shape == {"data": 4}
  assert dict(sharding.make_mesh((2, -1), ("data", "model")).shape) == {
      "data": 2, "model": 2}
  with pytest.raises(ValueError, match="does not use all"):
    sharding.make_mesh((3,), ("data",))
  with pytest.raises(ValueError, match="must contain 'data'"):
    sharding.make_mesh((4,), ("batch",))


def test_sharding_rules_match_state_paths():
  mesh = sharding.make_mesh((-1,), ("data",))
  tree = {"params": {"conv": {"kernel": jax.ShapeDtypeStruct((4, 8),
                                                             np.float32)},
                     "bn": {"scale": jax.ShapeDtypeStruct((8,), np.float32)}}}
  sh = sharding.infer_state_sharding(
      tree, mesh, [("params/.*/kernel", ("data", None))])
  assert sh["params"]["conv"]["kernel"].spec == jax.sharding.PartitionSpec(
      "data", None)
  assert sh["params"]["bn"]["scale"].spec == jax.sharding.PartitionSpec()
