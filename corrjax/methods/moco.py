"""MoCo v2 training of SFC's image-level semantic ResNet.

Reference: facebookresearch/moco@7397dfe, `moco/builder.py` (model, momentum
encoder, queue, shuffle BN) and `main_moco.py` (optimiser, data). One step,
in the reference's order (`builder.py:128-173`, `main_moco.py:417-430`):

  1. q = normalize(f_q(view1)) in train mode (BN statistics update);
  2. key encoder <- m * key + (1 - m) * query parameters (BN buffers are not
     averaged: `_momentum_update_key_encoder` walks `parameters()` only);
  3. k = normalize(f_k(view2)) in train mode under shuffle BN;
  4. InfoNCE against the queue, SGD step of the query encoder;
  5. enqueue the keys of the whole global batch.

Shuffle BN (`builder.py:81-126`): each reference GPU normalises its 32
queries with their own batch statistics, while the keys are normalised in
groups of a random permutation of the global batch, so that a query and
its positive key never share BN statistics. Under jit corrjax's BN is global
(one group), which would let the model match q_i and k_i through the batch
statistics again; so this module reproduces the reference's groups
explicitly and independently of the device count: with
`moco.bn_group_size` = g, queries are normalised in consecutive groups of g
and keys in groups of g of a permutation drawn from the step's PRNG key
(then un-permuted). g = 32 is the reference's 256 / 8 GPUs; g = 0 uses
global BN (no shuffle). The groups' running statistics are averaged (DDP
instead keeps rank 0's, `broadcast_buffers`).

Weight decay: torch.optim.SGD(model.parameters(), weight_decay=1e-4)
(`main_moco.py:291-296`) decays every parameter, BN and biases included,
while `optim.make_optimizer` decays kernels only; with
`moco.decay_all_parameters` the step adds wd * p to the gradients of the
other parameters, so that together they equal torch's coupled decay.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import ml_collections
import optax

from corrjax import optim
from corrjax import sharding
from corrjax import train_state as train_state_lib
from corrjax.data import image_views
from corrjax.data import normalization
from corrjax.losses import infonce
from corrjax.models import image_ssl
from corrjax.models import precision
from corrjax.ops import l2norm
from corrjax.ops import queue as queue_lib
from corrjax.methods import step_tail
from corrjax.methods import trunk

# The step does not depend on config.total_steps (no EMA or schedule over
# the run's length): runs that differ only there share one compiled step
# (corrjax/compiled_steps.py).
STEP_READS_TOTAL_STEPS = False

TARGET_KEYS = ("encoder", "projector")


def build_model(config: ml_collections.ConfigDict) -> image_ssl.ImageSSLNet:
  m = config.model
  return image_ssl.ImageSSLNet(
      arch=m.arch, width=m.width, strides=tuple(m.strides),
      padding_mode=m.padding_mode, zero_init_last_bn=m.zero_init_last_bn,
      projection_hidden_dim=m.projection_hidden_dim,
      projection_dim=m.projection_dim, projection_bn=m.projection_bn,
      projection_out_bias=m.projection_out_bias,
      prediction_hidden_dim=m.prediction_hidden_dim,
      dtype=precision.compute_dtype(m))


def init_online_and_target(rng: jax.Array, *, model: image_ssl.ImageSSLNet,
                           tx: optax.GradientTransformation,
                           config: ml_collections.ConfigDict
                           ) -> train_state_lib.TrainState:
  """Online weights from `rng`; the target starts as an exact copy of the
  encoder and projector (`builder.py:43-47`)."""
  init_rng, state_rng = jax.random.split(rng)
  size = config.data.crop_size
  variables = model.init(init_rng, jnp.zeros((1, size, size, 3)),
                         train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(params), rng=state_rng,
      target_params={k: params[k] for k in TARGET_KEYS},
      target_batch_stats={k: batch_stats[k] for k in TARGET_KEYS
                          if k in batch_stats})  # MoCo's head has no BN.


def init_state(rng: jax.Array, *, model: image_ssl.ImageSSLNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Query and key networks and the queue in `extra` (`builder.py:49-53`)."""
  queue_lib.check_sizes(config.moco.queue_size, config.data.batch_size)
  rng, queue_rng = jax.random.split(rng)
  state = init_online_and_target(rng, model=model, tx=tx, config=config)
  return state.replace(extra=queue_lib.init_queue(
      queue_rng, size=config.moco.queue_size,
      dim=config.model.projection_dim))


def apply_in_groups(apply_fn, x: jax.Array, group_size: int):
  """Runs `apply_fn` with BN statistics per group of consecutive examples.

  Args:
    apply_fn: x [b, ...] -> (out [b, ...], batch_stats), a train-mode
      forward returning its updated BN statistics.
    x: float [B, ...].
    group_size: g dividing B; 0 or g >= B: one group (global BN).

  Returns:
    (out [B, ...], batch_stats averaged over the B / g groups).
  """
  b = x.shape[0]
  if not group_size or group_size >= b:
    return apply_fn(x)
  if b % group_size:
    raise ValueError(f"moco.bn_group_size {group_size} does not divide the "
                     f"batch size {b}.")
  groups = x.reshape((b // group_size, group_size) + x.shape[1:])
  out, stats = jax.vmap(apply_fn)(groups)
  out = out.reshape((b,) + out.shape[2:])
  return out, jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), stats)


def on_batch_sharding(x: jax.Array, like: jax.Array) -> jax.Array:
  """`x` constrained to the batch sharding (`sharding.batch_sharding`) of
  the mesh that `like`, an input of the jitted step, is placed on.

  A no-op on values, and outside a mesh with a 'data' axis (e.g. a step
  jitted without shardings). Shuffle BN's permutation gathers rows from
  every shard; without this the SPMD partitioner keeps the gathered batch
  replicated and runs the key encoder on the whole global batch on every
  device (MoCo's compiled FLOPs were 4.8x the lowered ones on v5e-16,
  docs/scaling.md).
  """
  mesh = jax.typeof(like).sharding.mesh
  if sharding.DATA_AXIS not in mesh.axis_names:
    return x
  return jax.lax.with_sharding_constraint(x, sharding.batch_sharding(mesh))


def decay_non_kernels(grads, params, weight_decay: float):
  """grads + wd * params on every leaf but kernels (which optim decays)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, g, p: g if getattr(path[-1], "key", None) == "kernel"
      else g + weight_decay * p, grads, params)


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model: image_ssl.ImageSSLNet,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               temperature: float, momentum: float, bn_group_size: int,
               extra_weight_decay: float, normalization_name: str):
  """One MoCo update. Pure; jit it with shardings (see train.py).

  Args:
    state: the train state; `extra` holds {"queue": [K, D], "queue_ptr"}.
    batch: {"view1": uint8 [B, S, S, 3] queries, "view2": uint8 [B, S, S, 3]
      keys (`main_moco.py:417`: im_q = images[0], im_k = images[1])}.
    model: the query network.
    tx: optimiser.
    schedule: learning-rate schedule, for logging.
    temperature: InfoNCE temperature (0.2).
    momentum: key-encoder momentum m (0.999).
    bn_group_size: BN group size of queries and shuffled keys (0: global).
    extra_weight_decay: coupled decay added to non-kernel gradients (0: off).
    normalization_name: input normalisation ('imagenet').

  Returns:
    (new state, metrics dict of scalars).
  """
  normalize = functools.partial(normalization.normalize,
                                name=normalization_name)
  x_q, x_k = normalize(batch["view1"]), batch["view2"]
  target_params = optim.ema_update(
      state.target_params, {k: state.params[k] for k in TARGET_KEYS},
      momentum)

  def key_forward(x):
    out, updates = model.apply(
        {"params": target_params, "batch_stats": state.target_batch_stats},
        x, train=True, method=model.project, mutable=["batch_stats"])
    return l2norm.l2_normalize(out["proj"]), updates["batch_stats"]

  if bn_group_size and bn_group_size < x_k.shape[0]:
    rng = jax.random.fold_in(state.rng, state.step)
    perm = jax.random.permutation(rng, x_k.shape[0])
    # `_batch_shuffle_ddp` (`moco/builder.py`) gives each GPU its slice of
    # the shuffled global batch: the shuffled keys stay batch-sharded. The
    # uint8 images are shuffled (4x fewer bytes to gather than float32),
    # then normalised, which is elementwise.
    shuffled, target_stats = apply_in_groups(
        key_forward, normalize(on_batch_sharding(x_k[perm], x_k)),
        bn_group_size)
    keys = jnp.zeros_like(shuffled).at[perm].set(shuffled)  # Un-shuffle.
  else:
    keys, target_stats = key_forward(normalize(x_k))
  keys = jax.lax.stop_gradient(keys)

  def loss_fn(params):
    def query_forward(x):
      out, updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, x,
          train=True, mutable=["batch_stats"])
      return l2norm.l2_normalize(out["proj"]), updates["batch_stats"]

    queries, batch_stats = apply_in_groups(query_forward, x_q, bn_group_size)
    loss, terms = infonce.infonce_loss(
        query=queries, key=keys, queue=state.extra["queue"],
        temperature=temperature)
    return loss, (terms, batch_stats)

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grad_norm = optax.tree.norm(grads)
  if extra_weight_decay:
    grads = decay_non_kernels(grads, state.params, extra_weight_decay)
  new_state, update_metrics = step_tail.apply_gradients(
      state, grads, tx=tx, schedule=schedule, grad_norm=grad_norm)
  queue, queue_ptr = queue_lib.enqueue(
      state.extra["queue"], state.extra["queue_ptr"], keys)
  new_state = new_state.replace(
      batch_stats=batch_stats, target_params=target_params,
      target_batch_stats=jax.lax.stop_gradient(target_stats),
      extra={"queue": queue, "queue_ptr": queue_ptr})
  return new_state, {"loss": loss, **terms, **update_metrics}


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: image_ssl.ImageSSLNet,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  queue_lib.check_sizes(config.moco.queue_size, config.data.batch_size)
  wd = config.optim.weight_decay if config.moco.decay_all_parameters else 0.0
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule,
      temperature=config.moco.temperature, momentum=config.moco.momentum,
      bn_group_size=config.moco.bn_group_size, extra_weight_decay=wd,
      normalization_name=config.data.normalization)


def make_batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's two-view image batches from `start_step` on.

  Returns:
    (iterator of {"view1", "view2"} numpy batches, source whose
    `bad_frames` counts the unreadable images skipped).
  """
  images = image_views.image_source(config.data)
  logging.info("training images: %d", len(images))
  return image_views.two_view_batches(
      images, config.data, global_batch_size=config.data.batch_size,
      start_step=start_step, total_steps=config.total_steps, seed=config.seed)


encoder = trunk.encoder
encoder_variables = trunk.encoder_variables
