"""orbax save/restore of a sharded TrainState."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax import checkpointing
from corrjax import sharding
from corrjax import train_state


def _state(mesh):
  state = train_state.TrainState(
      step=jnp.asarray(3, jnp.int32),
      params={"conv": {"kernel": jnp.arange(32.0).reshape(4, 8)}},
      batch_stats={"bn": {"mean": jnp.ones(8)}},
      opt_state=({"mu": jnp.zeros((4, 8))},),
      rng=jax.random.key(0),
      target_params={"conv": {"kernel": jnp.full((4, 8), 2.0)}},
      target_batch_stats={"bn": {"mean": jnp.zeros(8)}})
  shardings = sharding.infer_state_sharding(
      state, mesh, [(".*params/conv/kernel", ("data", None))])
  return jax.device_put(state, shardings), shardings


def test_sharded_state_round_trips(tmp_path):
  mesh = sharding.make_mesh((-1,), ("data",))
  state, shardings = _state(mesh)
  manager = checkpointing.make_manager(str(tmp_path), every_steps=1, keep=2)
  assert checkpointing.save(manager, state)
  manager.wait_until_finished()
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      state, shardings)
  restored = checkpointing.restore_latest(manager, abstract)
  manager.close()
  chex.assert_trees_all_equal(
      jax.device_get(restored.params), jax.device_get(state.params))
  chex.assert_trees_all_equal(jax.device_get(restored.target_params),
                              jax.device_get(state.target_params))
  np.testing.assert_array_equal(jax.random.key_data(restored.rng),
                                jax.random.key_data(state.rng))
  kernel = restored.params["conv"]["kernel"]
  assert kernel.sharding.is_equivalent_to(shardings.params["conv"]["kernel"],
                                          2)
  assert len(kernel.addressable_shards) == 4
  assert kernel.addressable_shards[0].data.shape == (1, 8)
  # restore_tree reads the same checkpoint from a workdir, no template.
  step, tree = checkpointing.restore_tree(str(tmp_path))
  assert step == 3 and int(tree["step"]) == 3
  np.testing.assert_array_equal(tree["params"]["conv"]["kernel"],
                                jax.device_get(state.params["conv"]["kernel"]))


def test_keeps_the_newest_and_skips_existing_steps(tmp_path):
  mesh = sharding.make_mesh((-1,), ("data",))
  state, _ = _state(mesh)
  manager = checkpointing.make_manager(str(tmp_path), every_steps=1, keep=2,
                                       asynchronous=False)
  for step in (1, 2, 3):
    assert checkpointing.save(manager, state.replace(step=jnp.asarray(step)))
  assert not checkpointing.save(manager, state.replace(step=jnp.asarray(3)))
  assert manager.all_steps() == [2, 3]
  manager.close()


def test_missing_checkpoints_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    checkpointing.restore_tree(str(tmp_path))
  manager = checkpointing.make_manager(str(tmp_path), every_steps=1, keep=1)
  assert checkpointing.restore_latest(manager, None) is None
  manager.close()
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    checkpointing.restore_tree(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no checkpoint of step 7"):
    checkpointing.restore_tree(str(tmp_path), 7)
