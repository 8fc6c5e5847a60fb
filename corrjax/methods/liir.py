"""LIIR training and its evaluation seam.

Li et al., "Locality-Aware Inter-and Intra-Video Reconstruction for
Self-Supervised Correspondence Learning", CVPR 2022; as the unofficial
shasha521/LIIR_pytorch@21c7ba5 implements it (`main_dis.py` `train` 164-213
and `compute_lphoto` 215-248, `models/mast_momen.py` `forward` 110-134).

One step, in the reference's order:
  1. conv_semantic_k <- m k + (1 - m) conv_semantic (`mast_momen.py:119`,
     before the momentum head is used);
  2. target, then reference through the trunk in train mode (two BN
     calls), heads; the reference's keys from the momentum head
     (models/liir.py `pair_features`);
  3. L4 + 0.5 L8 + L_compact (losses/liir_objective.py) with the queue's
     entries of other videos as negatives, once the queue has been filled
     and one more step taken (`colorizer_momen.py:143`: flag > factor);
  4. Adam step;
  5. enqueue the global batch's momentum reference keys and video ids
     (`mast_momen.py:51-61`, all-gathered: under jit, the global batch).
With `liir.position_shift` 'roll' or 'permute' the enqueued keys come from
a reference pass with the shifted position embedding (models/liir.py
`shift_embedding`; 'permute' draws its blocks' cycle from
fold_in(state.rng, state.step)); the public code has no position shifting.

State: params {"encoder", "pos_embed", "post_convolution",
"conv_semantic"}; extra {"momentum": conv_semantic_k {"kernel", "bias"},
"queue": {"feats" [N, h8, w8, C8], "ids" int32 [N] (-1 empty), "ptr",
"count" (enqueues so far)}}.

Switches (config.liir): `inter_video` (L8 and its queue, the reference's
`--usemomen`), `compactness` (L_compact, `--compact`), `position_shift`;
`position_embedding` is the model's `use_pe`.

Not reproduced: per-GPU min_len (here over the global batch, see
losses/liir_inter.py).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax


from corrjax import train_state as train_state_lib
from corrjax.evals import features as features_lib
from corrjax.ops import l2norm
from corrjax.data import frame_pairs
from corrjax.losses import liir_inter
from corrjax.losses import liir_objective
from corrjax.models import liir
from corrjax.models import precision

# The step does not depend on config.total_steps (no EMA or schedule over
# the run's length): runs that differ only there share one compiled step
# (corrjax/compiled_steps.py).
STEP_READS_TOTAL_STEPS = False

ARCH = "liir_resnet18"


def build_model(config: ml_collections.ConfigDict) -> liir.LIIRNet:
  m = config.model
  return liir.LIIRNet(arch=m.get("arch", "resnet18"), width=m.width,
                      widths=tuple(m.widths),
                      strides=tuple(m.strides), pe_size=tuple(m.pe_size),
                      match_dim=m.match_dim, semantic_dim=m.semantic_dim,
                      use_pe=m.use_pe, dtype=precision.compute_dtype(m))


def _check_queue(queue_size: int, batch_size: int) -> None:
  if queue_size < 0 or (queue_size and queue_size % batch_size):
    raise ValueError(
        f"liir.queue_size={queue_size} must be a multiple of the global "
        f"batch size {batch_size} (the reference's bsize * factor).")


def init_state(rng: jax.Array, *, model: liir.LIIRNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Weights from `rng`, momentum head = conv_semantic, an empty queue."""
  _check_queue(config.liir.queue_size, config.data.batch_size)
  init_rng, state_rng = jax.random.split(rng)
  size = config.data.size
  variables = model.init(init_rng, jnp.zeros((1, size, size, 3)))
  params = variables["params"]
  keys = jax.eval_shape(model.apply, variables,
                        jnp.zeros((1, size, size, 3)))["semantic"]
  n = config.liir.queue_size
  queue = {"feats": jnp.zeros((n, *keys.shape[1:]), jnp.float32),
           "ids": -jnp.ones((n,), jnp.int32),
           "ptr": jnp.zeros((), jnp.int32),
           "count": jnp.zeros((), jnp.int32)}
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables["batch_stats"], opt_state=tx.init(params),
      rng=state_rng,
      extra={"momentum": liir.init_momentum_head(params), "queue": queue})


def enqueue(queue: dict, keys: jax.Array, ids: jax.Array) -> dict:
  """`_dequeue_and_enqueue` (`mast_momen.py:51-61`): slot ptr..ptr+B."""
  n = queue["ids"].shape[0]
  if not n:
    return queue
  feats = jax.lax.dynamic_update_slice(
      queue["feats"], jax.lax.stop_gradient(keys).astype(jnp.float32),
      (queue["ptr"], 0, 0, 0))
  new_ids = jax.lax.dynamic_update_slice(queue["ids"],
                                         ids.astype(jnp.int32),
                                         (queue["ptr"],))
  return {"feats": feats, "ids": new_ids,
          "ptr": ((queue["ptr"] + keys.shape[0]) % n).astype(jnp.int32),
          "count": queue["count"] + 1}


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model: liir.LIIRNet, tx: optax.GradientTransformation,
               schedule: optax.Schedule, momentum: float,
               position_shift: str, inter_weight: float,
               compact_weight: float, equalize: bool):
  """One LIIR update. Pure; jit it with shardings.

  Args:
    state: the train state (see the module docstring).
    batch: frame_pairs.pair_batches output: "reference", "target" float
      [B, S, S, 3]; "reference_label", "target_label" [B, S, S, 1];
      "video_id" int32 [B].
    model: the network.
    tx: optimiser.
    schedule: learning-rate schedule, for logging.
    momentum: EMA momentum of conv_semantic_k (0.999).
    position_shift: 'none', 'roll' or 'permute'.
    inter_weight: weight of L8 (0.5; 0 disables it and the queue).
    compact_weight: weight of L_compact (1; 0: off).
    equalize: the reference's min_len equalisation of negatives.

  Returns:
    (new state, metrics dict of scalars).
  """
  ema = liir.momentum_update(state.extra["momentum"],
                             state.params["conv_semantic"], momentum)
  queue = state.extra["queue"]
  n = queue["ids"].shape[0]
  batch_size = batch["target"].shape[0]
  negatives, mask = None, None
  if n and inter_weight:
    active = queue["count"] > n // batch_size
    mask = liir_inter.negative_mask(queue["ids"], batch["video_id"],
                                    equalize=equalize) & active
    negatives = queue["feats"]

  def loss_fn(params):
    feats, stats = liir.pair_features(
        model, {"params": params, "batch_stats": state.batch_stats}, ema,
        batch["target"], batch["reference"], train=True,
        position_shift=position_shift,
        shift_key=jax.random.fold_in(state.rng, state.step))
    loss, terms = liir_objective.liir_loss(
        feats=feats, ref_labels=batch["reference_label"],
        target_labels=batch["target_label"], negatives=negatives,
        negatives_mask=mask, inter_weight=inter_weight,
        compact_weight=compact_weight)
    return loss, (terms, stats, feats["queue_keys"])

  (loss, (terms, batch_stats, keys)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  extra = {"momentum": ema,
           "queue": enqueue(queue, keys, batch["video_id"])}
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state,
                            extra=extra)
  metrics = {"loss": loss, **terms, "lr": schedule(state.step),
             "grad_norm": optax.tree.norm(grads),
             "param_norm": optax.tree.norm(params)}
  return new_state, metrics


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: liir.LIIRNet, tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  c = config.liir
  _check_queue(c.queue_size, config.data.batch_size)
  if c.position_shift not in liir.POSITION_SHIFTS:
    raise ValueError(f"liir.position_shift={c.position_shift!r}; choose "
                     f"from {liir.POSITION_SHIFTS}.")
  if not 0 <= c.momentum < 1:
    raise ValueError(f"liir.momentum={c.momentum} must be in [0, 1).")
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule, momentum=c.momentum,
      position_shift=c.position_shift,
      inter_weight=c.inter_weight if c.inter_video else 0.0,
      compact_weight=c.compact_weight if c.compactness else 0.0,
      equalize=c.equalize)


def make_batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's frame-pair batches from `start_step` on, and the source.

  Returns:
    (iterator of frame_pairs batches, the PairLoader with `bad_frames`).
  """
  return frame_pairs.pair_batches(
      config.data, global_batch_size=config.data.batch_size,
      start_step=start_step, total_steps=config.total_steps,
      seed=config.seed)


def _model_from_variables(variables: dict) -> liir.LIIRNet:
  """The LIIRNet whose parameters `variables` holds (sizes from shapes)."""
  params = variables["params"]
  width = params["encoder"]["conv1"]["kernel"].shape[-1]
  widths = tuple(params["encoder"][f"layer{i}"]["block0"]["conv1"]["kernel"]
                 .shape[-1] for i in range(1, 5))
  blocks = tuple(sum(name.startswith("block")
                     for name in params["encoder"][f"layer{i}"])
                 for i in range(1, 5))
  arch = {(1, 1, 1, 1): "resnet10", (2, 2, 2, 2): "resnet18"}[blocks]
  pe = params.get("pos_embed")
  return liir.LIIRNet(
      arch=arch, width=width, widths=widths, strides=(1, 2, 1, 1),
      pe_size=tuple(pe.shape[1:3]) if pe is not None else (128, 128),
      match_dim=params["post_convolution"]["kernel"].shape[-1],
      use_pe=pe is not None)


def encoder_from_variables(variables: dict, *, pad_divisible: int = 4
                           ) -> features_lib.Encoder:
  """LIIR's matching features f4 for label propagation (stride 4).

  As LIIR_pytorch's evaluation (`evaluate_davis.py:83-95`,
  `functional/feeder/dataset/DavisLoaderLab.py:19-38`): full-resolution
  frames, RGB / 255 -> Lab (data/frame_pairs.py `rgb_to_lab`) normalised by
  (50, 0, 0), (50, 127, 127), zero-padded at the bottom and right to a
  multiple of 4; trunk (BN running statistics, position embedding resized
  to the frame) -> post_convolution, 64-d. `raw_apply` gives them as they
  are (LIIR's own protocol takes raw dot products); `apply` L2-normalises
  the cells (the CRW protocol's cosine affinities).
  """
  model = _model_from_variables(variables)

  def raw_apply(variables, frames):
    x = frame_pairs.rgb_to_lab(frames.astype(jnp.float32) / 255.0, xp=jnp)
    x = (x - frame_pairs.LAB_MEAN) / frame_pairs.LAB_STD
    h, w = x.shape[1:3]
    x = jnp.pad(x, ((0, 0), (0, (-h) % pad_divisible),
                    (0, (-w) % pad_divisible), (0, 0)))
    return model.apply(variables, x, method=lambda m, x: m.post_convolution(
        m.trunk(x, train=False)))

  def apply(variables, frames):
    return l2norm.l2_normalize(raw_apply(variables, frames))

  return features_lib.Encoder(apply=apply, stride=4, raw_apply=raw_apply)


def encoder(config: ml_collections.ConfigDict) -> features_lib.Encoder:
  """The evaluation seam (methods/__init__.py): f4 at stride 4. The sizes
  come from the variables (trained here or converted), not the config."""
  del config

  def apply(variables, frames):
    return encoder_from_variables(variables).apply(variables, frames)

  def raw_apply(variables, frames):
    return encoder_from_variables(variables).raw_apply(variables, frames)

  return features_lib.Encoder(apply=apply, stride=4, raw_apply=raw_apply)


def encoder_variables(tree: dict) -> dict:
  """The whole LIIRNet: trunk, position embedding and post_convolution."""
  return {"params": tree["params"], "batch_stats": tree["batch_stats"]}
