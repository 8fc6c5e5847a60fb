"""SFC's fine-grained correspondence (FC) training: dense BYOL on two crops.

Reference: Alxead/SFC `code/models/fine_grained.py` (model, EMA, loss) and
`code/train.py` (optimiser). Order of operations per step, as in the
reference `forward`: EMA-update the target from the current online weights,
run both views through the online branch (two separate forwards, so BN
statistics are per view), run both through the target in train mode (its
BN running statistics update; they are not averaged), then the symmetric loss.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import ml_collections
import optax

from corrjax import optim
from corrjax import train_state as train_state_lib
from corrjax.data import normalization
from corrjax.data import pipeline
from corrjax.losses import dense_byol
from corrjax.models import fine_grained
from corrjax.models import precision
from corrjax.methods import step_tail
from corrjax.methods import trunk

TARGET_KEYS = ("encoder", "projector")


def build_model(
    config: ml_collections.ConfigDict) -> fine_grained.FineGrainedNet:
  m = config.model
  return fine_grained.FineGrainedNet(
      arch=m.arch, width=m.width, strides=tuple(m.strides),
      padding_mode=m.padding_mode, zero_init_last_bn=m.zero_init_last_bn,
      projection_hidden_dim=m.projection_hidden_dim,
      prediction_hidden_dim=m.prediction_hidden_dim,
      projection_dim=m.projection_dim, dtype=precision.compute_dtype(m))


def init_state(rng: jax.Array, *, model: fine_grained.FineGrainedNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Online weights from `rng`; the target starts as an exact copy."""
  init_rng, state_rng = jax.random.split(rng)
  size = config.data.crop_size
  variables = model.init(init_rng, jnp.zeros((1, size, size, 3)),
                         train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(params), rng=state_rng,
      target_params={k: params[k] for k in TARGET_KEYS},
      target_batch_stats={k: batch_stats[k] for k in TARGET_KEYS})


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model: fine_grained.FineGrainedNet,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               total_steps: int, base_momentum: float, radius: float,
               normalization_name: str):
  """One FC update. Pure; jit it with shardings (see train.py).

  Args:
    state: the train state.
    batch: {"view1", "view2": uint8 [B, S, S, 3] crops of the same frames,
      "box1", "box2": float32 [B, 4] their boxes (see ops/geometry.py)}.
    model: the online network.
    tx: optimiser.
    schedule: learning-rate schedule, for logging.
    total_steps: K of the EMA schedule.
    base_momentum: EMA momentum at step 0 (0.99).
    radius: positive radius in cell diagonals (0.5).
    normalization_name: input normalisation ('cifar' as the reference trains).

  Returns:
    (new state, metrics dict of scalars).
  """
  normalize = functools.partial(normalization.normalize,
                                name=normalization_name)
  x1, x2 = normalize(batch["view1"]), normalize(batch["view2"])
  tau = optim.ema_momentum(state.step, total_steps, base_momentum)
  target_params = optim.ema_update(
      state.target_params, {k: state.params[k] for k in TARGET_KEYS}, tau)

  def target_forward(x, stats):
    out, updates = model.apply(
        {"params": target_params, "batch_stats": stats}, x, train=True,
        method=model.project, mutable=["batch_stats"])
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
    loss, terms = dense_byol.symmetric_loss(
        pred1=out1["pred"], pred2=out2["pred"], target1=target1,
        target2=target2, boxes1=batch["box1"], boxes2=batch["box2"],
        radius=radius)
    return loss, (terms, updates["batch_stats"])

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state, update_metrics = step_tail.apply_gradients(
      state, grads, tx=tx, schedule=schedule)
  new_state = new_state.replace(
      batch_stats=batch_stats, target_params=target_params,
      target_batch_stats=jax.lax.stop_gradient(target_stats))
  return new_state, {"loss": loss, **terms, "tau": tau, **update_metrics}


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: fine_grained.FineGrainedNet,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule,
      total_steps=config.total_steps,
      base_momentum=config.ema.base_momentum, radius=config.loss.radius,
      normalization_name=config.data.normalization)


def make_batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's two-view batches from `start_step` on, and the crop source.

  Returns:
    (iterator of numpy batch dicts, source whose `bad_frames` counts the
    unreadable frames skipped).
  """
  frames = pipeline.training_frames(config.data)
  logging.info("training frames: %d", len(frames))
  return pipeline.two_view_batches(
      frames, config.data, global_batch_size=config.data.batch_size,
      start_step=start_step, total_steps=config.total_steps, seed=config.seed)


encoder = trunk.encoder
encoder_variables = trunk.encoder_variables
