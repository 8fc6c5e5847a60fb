"""The end of every method's train step: optimiser update and its metrics."""

import jax
import optax

from corrjax import train_state as train_state_lib


def apply_gradients(state: train_state_lib.TrainState, grads, *,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule,
                    grad_norm: jax.Array | None = None
                    ) -> tuple[train_state_lib.TrainState,
                               dict[str, jax.Array]]:
  """One optimiser update of `state.params` by `grads`.

  Args:
    state: the train state before the update (its step is the number of
      updates already made).
    grads: gradients, the structure of `state.params`.
    tx: optimiser whose state is `state.opt_state`.
    schedule: learning-rate schedule, logged at `state.step`.
    grad_norm: the gradient norm to log (default: that of `grads`; MoCo
      logs the norm before its extra weight decay).

  Returns:
    (state with step + 1, the new params and opt_state, everything else
    as given; metrics {"lr", "grad_norm", "param_norm"} scalars).
  """
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  if grad_norm is None:
    grad_norm = optax.tree.norm(grads)
  metrics = {"lr": schedule(state.step), "grad_norm": grad_norm,
             "param_norm": optax.tree.norm(params)}
  return new_state, metrics
