"""orbax checkpoints of the sharded train state (async, keep N, resume)."""

import logging
import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp

from corrjax import train_state as train_state_lib


def checkpoint_dir(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute: one folder per complete step."""
  return os.path.join(os.path.abspath(workdir), "checkpoints")


# orbax's replica-parallel save writes an array replicated over n devices
# as n slices, one per replica, each cut by its own dispatched slice op
# (jax_array_handlers.py, replica_slices.py: `transfer_arrays_to_host`). A
# train state is mostly small replicated leaves (biases, BN scales): the FC
# :smoke state on 4 devices is ~2900 slice ops, 0.65 s of a 0.86 s save on
# CPU. Slices under this size are not worth it; the array is written whole
# by one replica. The bytes on disk are the same either way.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _write_small_arrays_whole() -> None:
  """Registers orbax's default jax.Array handler again with
  MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL (once; a handler registered by
  someone else is left alone)."""
  current = ocp.type_handlers.get_type_handler(jax.Array)
  if type(current) is not ocp.type_handlers.ArrayHandler:  # pylint: disable=unidiomatic-typecheck
    return
  if (getattr(current, "_min_slice_bytes_for_replica_parallel", None) ==
      MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL):
    return
  handler = ocp.type_handlers.ArrayHandler(
      min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
      array_metadata_store=getattr(current, "_array_metadata_store", None))
  absl_logger = logging.getLogger("absl")  # orbax warns of the override.
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  finally:
    absl_logger.setLevel(level)


def make_manager(workdir: str, *, every_steps: int, keep: int,
                 asynchronous: bool = True) -> ocp.CheckpointManager:
  """A manager writing `<workdir>/checkpoints/<step>`.

  orbax writes each step to a temporary folder and renames it when complete,
  so a run killed mid-save leaves the previous checkpoint intact.
  """
  _write_small_arrays_whole()
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=every_steps, max_to_keep=keep, create=True,
      enable_async_checkpointing=asynchronous, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


_TMP = re.compile(r"^(\d+)\.orbax-checkpoint-tmp")


def incomplete_steps(workdir: str) -> list[int]:
  """Steps whose save was interrupted: only a `<step>.orbax-checkpoint-tmp*`
  folder exists. orbax removes them when the manager opens; the previous
  complete checkpoint is intact."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  found = (_TMP.match(name) for name in os.listdir(directory))
  return sorted({int(m.group(1)) for m in found if m} -
                set(complete_steps(workdir)))


def complete_steps(workdir: str) -> list[int]:
  """Steps with a finished checkpoint folder."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def save(manager: ocp.CheckpointManager, state: train_state_lib.TrainState,
         *, force: bool = False) -> bool:
  """Saves at `state.step` if the interval says so (or `force`)."""
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return False
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(manager: ocp.CheckpointManager, abstract_state
                   ) -> train_state_lib.TrainState | None:
  """The latest saved state, with the shardings of `abstract_state`.

  Args:
    manager: the checkpoint manager.
    abstract_state: TrainState of jax.ShapeDtypeStruct leaves carrying
      NamedShardings (from jax.eval_shape + infer_state_sharding).

  Returns:
    The restored state, or None when there is no checkpoint.
  """
  step = manager.latest_step()
  if step is None:
    return None
  logging.info("restoring checkpoint of step %d from %s", step,
               manager.directory)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def restore_tree(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """(step, the saved state as a nested dict of numpy arrays), no template.

  What evaluation and warm starts need: no model, optimiser or training
  loop is built. `step` None is the latest complete checkpoint.

  Raises:
    FileNotFoundError: no such checkpoint.
  """
  steps = complete_steps(workdir)
  if step is None:
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {workdir!r}/checkpoints.")
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f"no checkpoint of step {step} in {workdir!r}.")
  path = os.path.join(checkpoint_dir(workdir), str(step), "default")
  # A checkpoint of a multi-host run names devices this process does not
  # have: read those arrays onto one local device.
  with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
    tree = checkpointer.restore(path, args=ocp.args.StandardRestore(
        fallback_sharding=jax.sharding.SingleDeviceSharding(
            jax.local_devices()[0])))
  return step, jax.tree_util.tree_map(_to_numpy, tree)


def _to_numpy(x):
  try:
    return np.asarray(x)
  except TypeError:  # PRNG keys: kept as they are.
    return x
