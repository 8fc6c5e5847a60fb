"""Training methods: each builds its model, initial state and train step.

A method module provides:
  build_model(config) -> flax module;
  init_state(rng, *, model, tx, config) -> TrainState (pure, jit-able);
  bind_train_step(config, *, model, tx, schedule) -> step(state, batch)
    -> (state, metrics), pure, jitted with shardings by train.py;
  make_batches(config, *, start_step) -> (iterator of this host's numpy
    batch dicts for steps start_step+1.., source with a `bad_frames` set);
  encoder_spec(config) -> dict(arch, width, padding_mode) of the ResNet
    trunk used for label propagation;
  encoder_variables(state) -> {"params", "batch_stats"} of that trunk.
"""

from corrjax.methods import byol
from corrjax.methods import crw
from corrjax.methods import fine_grained
from corrjax.methods import moco

METHODS = {"fine_grained": fine_grained, "moco": moco, "byol": byol,
           "crw": crw}


def get(name: str):
  """The method module registered as `name`."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choose from "
                     f"{sorted(METHODS)}.")
  return METHODS[name]
