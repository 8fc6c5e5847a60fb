"""LIIR: the step on 4 devices equals the step on 1 (queue and momentum head
included), and a run killed mid-way resumes to the same state."""

import functools
import os
import signal

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import optim
from corrjax import sharding
from corrjax import train
from corrjax.methods import liir as liir_method

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STEPS = 4  # Queue of 2 batches: negatives from step 4 on.


def _config():
  c = config_defaults.load(os.path.join(REPO, "configs/liir.py:smoke"))
  c.data.size = 32
  c.liir.position_shift = "permute"  # Keyed by (state.rng, step).
  c.total_steps, c.log_every_steps, c.checkpoint_every_steps = STEPS, 1, 2
  c.evals = config_defaults.evals()
  return c


def _run(config, devices, batches, initial):
  """Host copies of the state after each step, and the metrics."""
  mesh = sharding.make_mesh((-1,), ("data",), devices)
  model = liir_method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state_sh = jax.tree_util.tree_map(
      lambda a: a.sharding, train.abstract_state(config, mesh, model, tx))
  state = jax.device_put(jax.tree_util.tree_map(lambda x: x.copy(), initial),
                         state_sh)  # A copy: the step donates its input.
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  states, metrics = [], []
  for batch in batches:
    state, m = step(state, sharding.shard_host_batch(
        batch, sharding.batch_sharding(mesh)))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return states, metrics


@functools.lru_cache(maxsize=None)
def _runs():
  config = _config()
  batches, _ = liir_method.make_batches(config, start_step=0)
  batches = [next(batches) for _ in range(STEPS)]
  model = liir_method.build_model(config)
  tx, _ = optim.make_optimizer(config.optim, config.total_steps)
  initial = jax.jit(functools.partial(
      liir_method.init_state, model=model, tx=tx, config=config))(
          jax.random.key(config.seed))
  return (_run(config, jax.devices()[:1], batches, initial),
          _run(config, jax.devices(), batches, initial))


@pytest.mark.slow
def test_four_devices_equal_one_device():
  assert jax.device_count() == 4
  (one, m1), (four, m4) = _runs()
  for a, b in zip(one, four):
    chex.assert_trees_all_close(
        (a.params, a.batch_stats, a.opt_state, a.extra, a.step),
        (b.params, b.batch_stats, b.opt_state, b.extra, b.step),
        atol=1e-5, rtol=1e-5)
  for key in ("loss", "negatives"):
    np.testing.assert_allclose([m[key] for m in m1], [m[key] for m in m4],
                               rtol=1e-5, atol=1e-6)
  assert [float(m["negatives"]) > 0 for m in m4] == [False] * 3 + [True]
  # The queue holds the global batch's keys in order, on both meshes.
  assert np.asarray(four[-1].extra["queue"]["ids"]).shape == (8,)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_state(tmp_path):
  """Killed after step 3 and resumed: the state of the uninterrupted
  4-device run of `_runs` (same init, batches and compiled step)."""
  workdir = str(tmp_path / "run")
  sent = []

  def log(line):
    if line.startswith("step 3/") and not sent:
      sent.append(1)
      os.kill(os.getpid(), signal.SIGINT)

  with pytest.raises(KeyboardInterrupt):
    train.train(_config(), workdir, log=log)
  assert checkpointing.complete_steps(workdir) == [2, 3]
  lines = []
  train.train(_config(), workdir, log=lines.append)
  assert "resumed from step 3" in lines
  want = _runs()[1][0][-1]
  got = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(STEPS), "default"))
  assert set(got["extra"]) == {"momentum", "queue"}
  for key in ("params", "batch_stats", "opt_state", "extra", "step"):
    for x, y in zip(jax.tree_util.tree_leaves(getattr(want, key)),
                    jax.tree_util.tree_leaves(got[key])):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  np.testing.assert_array_equal(jax.random.key_data(want.rng),
                                jax.random.key_data(got["rng"]))
  assert (np.asarray(got["extra"]["queue"]["ids"]) >= 0).all()
