"""Training loop: mesh, data, sharded state, jitted steps, logs, checkpoints.

One global jax.Array batch per step, sharded over the mesh's 'data' axis; the
state is sharded by `config.sharding_rules` (replicated by default). The step
is jit-compiled once with donated state. A run resumes from the latest
checkpoint in `<workdir>/checkpoints`, and since the batch of step s and the
step's PRNG key depend only on (seed, s), a resumed run reaches the same
parameters as an uninterrupted one.
"""

import functools
import logging
import os
import signal
import threading
import time

from clu import metric_writers
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from corrjax import checkpointing
from corrjax import evaluation
from corrjax import sharding
from corrjax import methods
from corrjax import optim


def _method(config):
  return methods.get(config.method)


def _init_fn(config, model, tx):
  return functools.partial(_method(config).init_state, model=model, tx=tx,
                           config=config)


def abstract_state(config, mesh, model=None, tx=None):
  """The state as ShapeDtypeStructs carrying their NamedShardings.

  Shapes come from `jax.eval_shape` (nothing is computed); shardings from
  `config.sharding_rules`. Used to build the state and to restore it.
  """
  if model is None:
    model = _method(config).build_model(config)
  if tx is None:
    tx = optim.make_optimizer(config.optim, config.total_steps)[0]
  abstract = jax.eval_shape(_init_fn(config, model, tx),
                            jax.random.key(config.seed))
  state_sh = sharding.infer_state_sharding(abstract, mesh,
                                           config.sharding_rules)
  return jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, state_sh)


def _initial_state(config, model, tx, state_sh):
  """The state of step 0, built directly with the shardings `state_sh`."""
  init = jax.jit(_init_fn(config, model, tx), out_shardings=state_sh)
  return init(jax.random.key(config.seed))


def create_state(config, mesh, model, tx):
  """Initial state built directly with its shardings, and those shardings."""
  abstract = abstract_state(config, mesh, model, tx)
  state_sh = jax.tree_util.tree_map(lambda a: a.sharding, abstract)
  return _initial_state(config, model, tx, state_sh), state_sh


def make_train_step(config, mesh, model, tx, schedule, state_sh):
  """The jitted, sharded `train_step` of the config's method."""
  step = _method(config).bind_train_step(config, model=model, tx=tx,
                                         schedule=schedule)
  return jax.jit(step, in_shardings=(state_sh, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sh, sharding.replicated(mesh)),
                 donate_argnums=0)


def _format_seconds(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  return f"{seconds // 60}m{seconds % 60:02d}s"


def _check_finite(metrics: dict[str, float], step: int) -> None:
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(
        f"non-finite {', '.join(bad)} at step {step} "
        f"(loss={metrics.get('loss')}); lower the learning rate or check "
        "the data. The last checkpoint is intact.")


class _StopRequest:
  """Turns the first SIGINT/SIGTERM into a flag checked between steps.

  The step donates the state, so an exception raised inside it would leave
  nothing to save; the loop instead finishes the step, saves and stops. A
  second signal interrupts at once (the last periodic checkpoint stays).
  """

  def __init__(self):
    self.requested = ""
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train(config: ml_collections.ConfigDict, workdir: str, *,
          log=print):
  """Trains `config` in `workdir`, resuming if checkpoints exist.

  Returns:
    The final TrainState.
  """
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:  # Lets pretrained.load_encoder read the run.
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  sharding.check_batch_size(config.data.batch_size, mesh)
  method = _method(config)
  model = method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  abstract = abstract_state(config, mesh, model, tx)
  state_sh = jax.tree_util.tree_map(lambda a: a.sharding, abstract)
  manager = checkpointing.make_manager(
      workdir, every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints)
  state = checkpointing.restore_latest(manager, abstract)
  if state is None:
    state = _initial_state(config, model, tx, state_sh)
  start_step = int(jax.device_get(state.step))
  if start_step:
    log(f"resumed from step {start_step}")
  if start_step >= config.total_steps:
    log(f"no training: step {start_step} >= total_steps "
        f"{config.total_steps}")
    manager.close()
    return state

  batches, source = method.make_batches(config, start_step=start_step)
  log(f"mesh {dict(mesh.shape)}; global batch {config.data.batch_size}")
  p_train_step = make_train_step(config, mesh, model, tx, schedule, state_sh)
  batch_sh = sharding.batch_sharding(mesh)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True)

  # Writes steps_per_sec and uptime to TensorBoard.
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=config.total_steps, writer=writer,
      every_steps=config.log_every_steps)
  summed, count = None, 0
  window_start, window_step = time.time(), start_step
  with _StopRequest() as stop:
    for step in range(start_step + 1, config.total_steps + 1):
      batch = sharding.shard_host_batch(next(batches), batch_sh)
      state, metrics = p_train_step(state, batch)
      summed = metrics if summed is None else jax.tree_util.tree_map(
          jnp.add, summed, metrics)
      count += 1
      report_progress(step)
      is_last = step == config.total_steps
      if step % config.log_every_steps == 0 or is_last:
        means = {k: float(v) / count
                 for k, v in jax.device_get(summed).items()}
        _check_finite(means, step)
        now = time.time()
        rate = (step - window_step) / max(now - window_start, 1e-9)
        means["skipped_frames"] = len(source.bad_frames)
        writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()})
        eta = (config.total_steps - step) / max(rate, 1e-9)
        log(f"step {step}/{config.total_steps} | loss {means['loss']:.4f} | "
            f"{rate:.2f} steps/s | ETA {_format_seconds(eta)}")
        summed, count = None, 0
        window_start, window_step = now, step
      must_save = step % config.checkpoint_every_steps == 0 or is_last
      if must_save or stop.requested:
        if summed is not None:  # Never save a state that went non-finite.
          _check_finite({k: float(v) for k, v in
                         jax.device_get(summed).items()}, step)
        checkpointing.save(manager, state,
                           force=is_last or bool(stop.requested))
      if stop.requested:
        log(f"{stop.requested} at step {step}: checkpoint saved; run the "
            "same command again to resume")
        manager.wait_until_finished()
        manager.close()
        writer.close()
        raise KeyboardInterrupt(stop.requested)
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  writer.close()
  if source.bad_frames:
    log(f"warning: skipped {len(source.bad_frames)} unreadable frames")
  return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       log=print) -> dict | None:
  """Trains, then evaluates label propagation as `config.eval` says."""
  evaluation.check_fusion(config)  # Before hours of training, not after.
  if config.get("fusion_note"):
    log(config.fusion_note)
  state = train(config, workdir, log=log)
  return evaluation.evaluate_state(config, state, workdir, log=log)
