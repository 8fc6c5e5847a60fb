"""Global BYOL training of SFC's image-level semantic ResNet.

Reference: google-deepmind/deepmind-research@f5de0ed `byol/`
(`byol_experiment.py` loss and update, `utils/networks.py` heads,
`utils/schedules.py` EMA). One step, in the reference's order
(`byol_experiment.py:223-250,293-351`):

  1. online forward of view1 then view2 and target forward of both, all in
     train mode (each network's BN statistics update view by view);
  2. loss = mean_b [(2 - 2 cos(p1, z2')) + (2 - 2 cos(p2, z1'))];
  3. optimiser step of the online network;
  4. target <- target + (1 - tau_k) (online_new - target) with the updated
     online weights, tau_k = 1 - (1 - tau_0)(cos(pi k / K) + 1) / 2.

BN statistics are those of the global batch, as the reference's
cross-replica BN (`configs/byol.py:47-55`, `cross_replica_axis='i'`),
which is what jit over a global batch computes. The reference's online
linear classifier (labels) is not trained. The target starts as a copy of
the online network (the reference draws it from a second seed,
`byol_experiment.py:368`; BYOL PyTorch ports copy it).

Model, data and encoder accessors are MoCo's (`methods/moco.py`).
"""

import functools

import jax
import ml_collections
import optax

from corrjax import optim
from corrjax import train_state as train_state_lib
from corrjax.data import normalization
from corrjax.losses import byol as byol_loss
from corrjax.methods import moco
from corrjax.methods import step_tail
from corrjax.models import image_ssl

TARGET_KEYS = moco.TARGET_KEYS
build_model = moco.build_model
make_batches = moco.make_batches
encoder = moco.encoder
encoder_variables = moco.encoder_variables


def init_state(rng: jax.Array, *, model: image_ssl.ImageSSLNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Online network {encoder, projector, predictor}; target = a copy."""
  if not config.model.prediction_hidden_dim:
    raise ValueError("BYOL needs a predictor: set "
                     "config.model.prediction_hidden_dim > 0.")
  return moco.init_online_and_target(rng, model=model, tx=tx, config=config)


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model: image_ssl.ImageSSLNet,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               total_steps: int, base_momentum: float,
               normalization_name: str):
  """One BYOL update. Pure; jit it with shardings (see train.py).

  Args:
    state: the train state.
    batch: {"view1", "view2": uint8 [B, S, S, 3] two views of each image}.
    model: the online network.
    tx: optimiser.
    schedule: learning-rate schedule, for logging.
    total_steps: K of the EMA schedule.
    base_momentum: tau_0 (0.996).
    normalization_name: input normalisation ('imagenet').

  Returns:
    (new state, metrics dict of scalars).
  """
  normalize = functools.partial(normalization.normalize,
                                name=normalization_name)
  x1, x2 = normalize(batch["view1"]), normalize(batch["view2"])

  def target_forward(x, stats):
    out, updates = model.apply(
        {"params": state.target_params, "batch_stats": stats}, x,
        train=True, method=model.project, mutable=["batch_stats"])
    return out["proj"], updates["batch_stats"]

  target1, target_stats = target_forward(x1, state.target_batch_stats)
  target2, target_stats = target_forward(x2, target_stats)

  def loss_fn(params):
    out1, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x1, train=True,
        mutable=["batch_stats"])
    out2, updates = model.apply(
        {"params": params, "batch_stats": updates["batch_stats"]}, x2,
        train=True, mutable=["batch_stats"])
    loss, terms = byol_loss.symmetric_loss(
        pred1=out1["pred"], pred2=out2["pred"], target1=target1,
        target2=target2)
    return loss, (terms, updates["batch_stats"])

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state, update_metrics = step_tail.apply_gradients(
      state, grads, tx=tx, schedule=schedule)
  tau = optim.ema_momentum(state.step, total_steps, base_momentum)
  target_params = optim.ema_update(
      state.target_params, {k: new_state.params[k] for k in TARGET_KEYS},
      tau)
  new_state = new_state.replace(
      batch_stats=batch_stats, target_params=target_params,
      target_batch_stats=jax.lax.stop_gradient(target_stats))
  return new_state, {"loss": loss, **terms, "tau": tau, **update_metrics}


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: image_ssl.ImageSSLNet,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule,
      total_steps=config.total_steps,
      base_momentum=config.ema.base_momentum,
      normalization_name=config.data.normalization)
