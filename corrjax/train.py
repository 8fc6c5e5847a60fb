"""Training loop: mesh, data, sharded state, jitted steps, logs, checkpoints.

One global jax.Array batch per step, sharded over the mesh's 'data' axis; the
state is sharded by `config.sharding_rules` (replicated by default). The step
is jit-compiled once with donated state. A run resumes from the latest
checkpoint in `<workdir>/checkpoints`, and since the batch of step s and the
step's PRNG key depend only on (seed, s), a resumed run reaches the same
parameters as an uninterrupted one.
"""

import functools
import os
import time

from clu import metrics as clu_metrics
import jax
import ml_collections
import numpy as np

from corrjax import checkpointing
from corrjax import compiled_steps
from corrjax import interrupts
from corrjax import memory_budget
from corrjax import methods
from corrjax import optim
from corrjax import progress
from corrjax import sharding
from corrjax import summaries
from corrjax import warm_start


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


def _jitted_init(config, model, tx, state_sh):
  """fn(PRNG key) -> the state of step 0, built directly with the shardings
  `state_sh`."""
  return jax.jit(_init_fn(config, model, tx), out_shardings=state_sh)


def _initial_state(config, model, tx, state_sh):
  """The state of step 0, built directly with the shardings `state_sh`."""
  return _jitted_init(config, model, tx, state_sh)(
      jax.random.key(config.seed))


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


def _check_finite(metrics: dict[str, float], step: int) -> None:
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(
        f"non-finite {', '.join(bad)} at step {step} "
        f"(loss={metrics.get('loss')}); lower the learning rate or check "
        "the data. The last checkpoint is intact.")


def _add_to_means(window: dict | None,
                  metrics: dict) -> dict[str, clu_metrics.Average]:
  """Adds one step's scalar metrics (device arrays, not fetched) to the
  running means of the steps since the last log line."""
  step = {k: clu_metrics.Average(total=v, count=1) for k, v in metrics.items()}
  if window is None:
    return step
  return {k: window[k].merge(mean) for k, mean in step.items()}


def _compile_step(make_step, state, batch, memo, log):
  """The compiled step for these shapes (from `memo` when this process
  compiled it before); stops early if it cannot fit.

  Raises:
    MemoryError: one line naming the config entries that shrink the step.
  """
  t0 = time.time()
  key = ("step", compiled_steps.signature(state, batch))
  reused = key in memo
  if not reused:
    memo[key] = make_step().lower(state, batch).compile()
  compiled = memo[key]
  fits = memory_budget.check_fits(
      compiled, knobs="config.data.batch_size, config.data.crop_size or "
      "config.model.width")
  log(f"compiled the train step in {time.time() - t0:.1f}s"
      + (" (reused: compiled earlier in this process)" if reused else "")
      + (f"; {fits}" if fits else ""))
  return compiled


def train(config: ml_collections.ConfigDict, workdir: str, *,
          log=print, stop: interrupts.StopRequest | None = None):
  """Trains `config` in `workdir`, resuming if checkpoints exist.

  Interrupts (SIGINT, SIGTERM, SIGHUP, a closed output pipe reported through
  `stop.request`) finish the current step, save, wait for the save and
  raise KeyboardInterrupt; a failure of any kind waits for a save in flight
  before it propagates, so the newest checkpoint is always complete.

  Returns:
    The final TrainState.
  """
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  sharding.check_batch_size(config.data.batch_size, mesh)
  method = _method(config)
  model = method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  memo = compiled_steps.entry(config, mesh, method)
  if "abstract" not in memo:
    memo["abstract"] = abstract_state(config, mesh, model, tx)
  abstract = memo["abstract"]
  state_sh = jax.tree_util.tree_map(lambda a: a.sharding, abstract)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:  # Lets pretrained.load_encoder read the run.
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  for bad in checkpointing.incomplete_steps(workdir):
    log(f"found an incomplete checkpoint of step {bad} (its save was "
        "interrupted); it is discarded")
  manager = checkpointing.make_manager(
      workdir, every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints)
  stop = stop or interrupts.StopRequest()
  writer = None
  try:
    with stop:
      state = checkpointing.restore_latest(manager, abstract)
      if state is None:
        if "init" not in memo:
          memo["init"] = _jitted_init(config, model, tx, state_sh)
        state = warm_start.apply(memo["init"](jax.random.key(config.seed)),
                                 config.get("model_init") or {}, log=log)
      start_step = int(jax.device_get(state.step))
      if start_step:
        log(f"resumed from step {start_step}")
      if start_step >= config.total_steps:
        if config.total_steps:
          log(f"training already finished (step {start_step})")
        return state
      writer = summaries.create_writer(workdir,
                                       enabled=jax.process_index() == 0)
      state = _train_loop(config, mesh, method, model, tx, schedule, state_sh,
                          state, start_step, manager, writer, stop, memo,
                          log)
  finally:
    with stop.critical():  # A save in flight always completes.
      manager.wait_until_finished()
      manager.close()
      if writer is not None:
        writer.flush()
        writer.close()
  return state


def _train_loop(config, mesh, method, model, tx, schedule, state_sh, state,
                start_step, manager, writer, stop, memo, log):
  """Steps start_step+1..total_steps; see `train`."""
  batches, source = method.make_batches(config, start_step=start_step)
  log(f"mesh {dict(mesh.shape)}; global batch {config.data.batch_size}")
  batch_sh = sharding.batch_sharding(mesh)
  batch = sharding.shard_host_batch(next(batches), batch_sh)
  p_train_step = _compile_step(
      lambda: make_train_step(config, mesh, model, tx, schedule, state_sh),
      state, batch, memo, log)
  window, saved_step = None, start_step  # Metric means since the last log.
  window_start, window_step = time.time(), start_step
  for step in range(start_step + 1, config.total_steps + 1):
    if stop.requested and saved_step == step - 1:
      log(f"{stop.requested} before step {step}: the checkpoint of step "
          f"{saved_step} is the latest; run the same command to resume")
      raise KeyboardInterrupt(stop.requested)
    if batch is None:
      batch = sharding.shard_host_batch(next(batches), batch_sh)
    state, metrics = p_train_step(state, batch)
    batch = None
    window = _add_to_means(window, metrics)
    if step == start_step + 1:  # The ETA starts after the first step.
      jax.block_until_ready(metrics)
      window_start, window_step = time.time(), step
    is_last = step == config.total_steps
    if step % config.log_every_steps == 0 or is_last:
      means = {k: float(mean.compute()) for k, mean in window.items()}
      _check_finite(means, step)
      now = time.time()
      rate = (step - window_step) / max(now - window_start, 1e-9)
      means["skipped_frames"] = len(source.bad_frames)
      if step > window_step:
        means["steps_per_sec"] = rate
      writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()})
      eta = (config.total_steps - step) / max(rate, 1e-9)
      rate_text = (f"{rate:.2f} steps/s | ETA {progress.format_seconds(eta)}"
                   if step > window_step else "first step")
      log(f"step {step}/{config.total_steps} | loss {means['loss']:.4f} | "
          f"{rate_text}")
      window = None
      window_start, window_step = now, step
    must_save = step % config.checkpoint_every_steps == 0 or is_last
    if must_save or stop.requested:
      if window is not None:  # Never save a state that went non-finite.
        _check_finite({k: float(mean.total) for k, mean in window.items()},
                      step)
      with stop.critical():
        checkpointing.save(manager, state,
                           force=is_last or bool(stop.requested))
      saved_step = step
    if stop.requested:
      with stop.critical():
        manager.wait_until_finished()
      log(f"{stop.requested} at step {step}: checkpoint saved; run the "
          "same command again to resume")
      raise KeyboardInterrupt(stop.requested)
  if source.bad_frames:
    log(f"warning: skipped {len(source.bad_frames)} unreadable frames")
  return state
