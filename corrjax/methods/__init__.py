"""Training methods: each builds its model, initial state and train step.

A method module provides:
  build_model(config) -> flax module;
  init_state(rng, *, model, tx, config) -> TrainState (pure, jit-able);
  bind_train_step(config, *, model, tx, schedule) -> step(state, batch)
    -> (state, metrics), pure, jitted with shardings by train.py;
  make_batches(config, *, start_step) -> (iterator of this host's numpy
    batch dicts for steps start_step+1.., source with a `bad_frames` set);
  encoder(config) -> evals.features.Encoder: the evaluation seam, a pure
    fn(variables, frames) -> L2-normalised per-cell features and its
    stride (input normalisation inside);
  encoder_variables(tree) -> the variables `encoder` applies, read from
    the state as a plain tree (`networks.state_tree`, or a checkpoint
    restored without a template);
and optionally:
  STEP_READS_TOTAL_STEPS = False: the step does not depend on
    config.total_steps (no EMA schedule over the run), so that runs that
    differ only there share one compiled step (compiled_steps.py);
  mask_predictor(config, tree) -> fn(frames, first mask, protocol) ->
    int32 [T, H, W] ids, for methods that segment videos themselves (the
    VOS benchmarks call it instead of propagating labels);
  JOBS: {name: fn(config, workdir, *, log)}, offline jobs run by
    `python -m corrjax.main --mode=<name>` (e.g. pseudo-labelling);
  train_schedule(config, workdir, *, train, log, stop) -> final state: a
    run made of several `train` calls (corrjax.train.train, passed in),
    e.g. phases with other losses and data between them (Mask-VOS's
    clustering rounds); `--mode=train` calls it instead of `train`.

docs/adding_a_method.md walks through adding one.
"""

from corrjax.methods import byol
from corrjax.methods import crw
from corrjax.methods import fine_grained
from corrjax.methods import liir
from corrjax.methods import mask_vos
from corrjax.methods import moco

METHODS = {"fine_grained": fine_grained, "moco": moco, "byol": byol,
           "crw": crw, "liir": liir, "mask_vos": mask_vos}


def get(name: str):
  """The method module registered as `name`."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choose from "
                     f"{sorted(METHODS)}.")
  return METHODS[name]
