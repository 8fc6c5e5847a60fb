"""Training methods: each builds its model, initial state and train step.

A method module provides `build_model(config)`, `init_state(rng, *, model,
tx, image_size)`, `train_step(state, batch, *, ...)` and
`encoder_variables(state)`.
"""

from corrjax.methods import fine_grained

METHODS = {"fine_grained": fine_grained}


def get(name: str):
  """The method module registered as `name`."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choose from "
                     f"{sorted(METHODS)}.")
  return METHODS[name]
