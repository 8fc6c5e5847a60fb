"""Mask-VOS training: mask embedding + correspondence, Eq. 16.

Li et al., CVPR 2023, §3 and §3.3. One step on a batch of videos:

  L_seg (Eqs. 5-10): N references (2) with pseudo masks -> the query's
    per-object logits (models.mask_vos.MaskVOSNet) -> soft aggregation ->
    CE against the query's pseudo mask;
  L_short (Eq. 12): successive frames t, t+1 and a random Phi
    (ops.view_warp): X'_t = E(Phi(I_t)), X_{t+1} = Phi(E(I_{t+1}));
  L_long (Eqs. 14-15): distant frames t, t' (|t - t'| >= 5):
    X'_t' = E(Phi(I_t')) gives o_k, X_t' = Phi(E(I_t')) is trained against
    E(I_t);
  L = seg_weight L_seg + 0.1 L_short + 0.5 L_long (seg_weight 0 in the
    correspondence-only phase, where the L_seg forward is skipped).

Phi is drawn per step from fold_in(state.rng, step). Keys are compared at
the paper's temperature 1 by default (`config.loss.temperature`; the
released code uses 0.05).

Data (`make_batches`): data/mask_vos_clips.py, the batch of step s a pure
function of (seed, s) and the pseudo masks of `config.data.masks_dir`.
The whole schedule (`train_schedule`: correspondence-only phase, then
clustering and full-loss rounds with re-clustering, resumable) and the
offline job `JOBS["pseudo_labels"]` are in methods/mask_vos_rounds.py.

Evaluation: `mask_predictor` (Alg. 1 with R refinement rounds) on the VOS
benchmarks, or E alone by label propagation (`encoder`; a benchmark with
`predictor='propagation'`).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from corrjax import train_state as train_state_lib
from corrjax.data import mask_vos_clips
from corrjax.data import normalization
from corrjax.losses import mask_vos as losses
from corrjax.evals import features as features_lib
from corrjax.evals import labels as labels_lib
from corrjax.methods import mask_vos_rounds
from corrjax.models import mask_vos
from corrjax.models import mask_vos_inference
from corrjax.models import precision
from corrjax.ops import view_warp

# The step does not depend on config.total_steps (no EMA or schedule over
# the run's length): runs that differ only there share one compiled step
# (corrjax/compiled_steps.py).
STEP_READS_TOTAL_STEPS = False


def build_model(config: ml_collections.ConfigDict) -> mask_vos.MaskVOSNet:
  m = config.model
  return mask_vos.MaskVOSNet(
      arch=m.arch, width=m.width, key_dim=m.key_dim, value_dim=m.value_dim,
      decoder_widths=tuple(m.decoder_widths),
      temperature=config.loss.temperature, dtype=precision.compute_dtype(m))


def init_state(rng: jax.Array, *, model: mask_vos.MaskVOSNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Weights from `rng`; shapes from a 1-video batch of the config's size."""
  init_rng, state_rng = jax.random.split(rng)
  s, o = config.data.crop_size, config.data.num_objects
  n = config.data.num_refs
  variables = model.init(init_rng, jnp.zeros((1, n, s, s, 3)),
                         jnp.zeros((1, n, o, s, s)), jnp.zeros((1, s, s, 3)))
  params = variables["params"]
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables["batch_stats"], opt_state=tx.init(params),
      rng=state_rng)


def _flat_keys(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1, x.shape[-1])


def losses_fn(params, batch_stats, batch, rng, *, model, temperature,
              seg_weight, short_weight, long_weight, normalization_name):
  """Eq. 16 and its terms; returns (loss, (terms, new batch_stats))."""
  norm = functools.partial(normalization.normalize, name=normalization_name)
  short, long_ = norm(batch["short_frames"]), norm(batch["long_frames"])
  b, _, hh, ww = short.shape[:4]
  variables = {"params": params, "batch_stats": batch_stats}
  if seg_weight:
    seg_frames = norm(batch["seg_frames"])  # [B, N+1, H, W, 3]: refs, q.
    n = seg_frames.shape[1] - 1
    o = batch["object_valid"].shape[1]
    onehot = jax.nn.one_hot(batch["seg_masks"][:, :n], o + 1)[..., 1:]
    ref_masks = jnp.moveaxis(onehot, -1, 2)  # [B, N, O, H, W]
    out, updates = model.apply(variables, seg_frames[:, :n], ref_masks,
                               seg_frames[:, n], train=True,
                               mutable=["batch_stats"])
    seg, terms = losses.segmentation_loss(
        object_logits=out["object_logits"], labels=batch["seg_masks"][:, n],
        object_valid=batch["object_valid"])
    variables = {"params": params, "batch_stats": updates["batch_stats"]}
  else:  # Correspondence-only phase: no L_seg forward (V, D unchanged).
    seg = jnp.zeros((), jnp.float32)
    terms = {"seg_loss": seg, "seg_acc": seg}
  short_rng, long_rng = jax.random.split(rng)
  # One train-mode pass over [Phi(I_t), I_t+1, Phi(I_t'), I_t', I_t].
  s_box, s_flip = view_warp.sample_phi(short_rng, b)
  l_box, l_flip = view_warp.sample_phi(long_rng, b)
  size = (hh, ww)
  frames = jnp.concatenate([
      view_warp.apply_phi(short[:, 0], s_box, s_flip, size), short[:, 1],
      view_warp.apply_phi(long_[:, 1], l_box, l_flip, size), long_[:, 1],
      long_[:, 0]])
  feats, updates = model.apply(variables, frames, train=True,
                               method=mask_vos.MaskVOSNet.encode,
                               mutable=["batch_stats"])
  keys = jnp.split(feats["key"], 5)
  h, w = keys[0].shape[1:3]
  short_loss, short_terms = losses.short_term_loss(
      warped_next=_flat_keys(view_warp.apply_phi(keys[1], s_box, s_flip,
                                                 (h, w))),
      of_warped=_flat_keys(keys[0]), temperature=temperature)
  long_loss, long_terms = losses.long_term_loss(
      of_warped=_flat_keys(keys[2]),
      warped=_flat_keys(view_warp.apply_phi(keys[3], l_box, l_flip, (h, w))),
      target=_flat_keys(keys[4]), temperature=temperature)
  loss = losses.total_loss(seg=seg_weight * seg, short=short_loss,
                           long=long_loss, short_weight=short_weight,
                           long_weight=long_weight)
  return loss, ({**terms, **short_terms, **long_terms},
                updates["batch_stats"])


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model, tx, schedule, **loss_kwargs):
  """One update. Pure; jit it with shardings (see train.py).

  Args:
    state: the train state.
    batch: {"seg_frames": uint8 [B, N+1, H, W, 3] (N references, then the
      query), "seg_masks": int32 [B, N+1, H, W] pseudo masks in [0, O],
      "object_valid": bool [B, O], "short_frames": uint8 [B, 2, H, W, 3]
      (t, t+1), "long_frames": uint8 [B, 2, H, W, 3] (t, t')}.
    model, tx, schedule: network, optimiser, learning-rate schedule.
    **loss_kwargs: `losses_fn`'s keyword arguments.

  Returns:
    (new state, metrics dict of scalars).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  (loss, (terms, batch_stats)), grads = jax.value_and_grad(
      losses_fn, has_aux=True)(state.params, state.batch_stats, batch, rng,
                               model=model, **loss_kwargs)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state)
  metrics = {"loss": loss, **terms, "lr": schedule(state.step),
             "grad_norm": optax.tree.norm(grads),
             "param_norm": optax.tree.norm(params)}
  return new_state, metrics


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: mask_vos.MaskVOSNet,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  lc = config.loss
  if config.data.crop_size % 8:
    raise ValueError(f"config.data.crop_size={config.data.crop_size} must "
                     "be a multiple of 8 (the encoders' output stride).")
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule,
      temperature=lc.temperature, seg_weight=lc.seg_weight,
      short_weight=lc.short_weight, long_weight=lc.long_weight,
      normalization_name=config.data.normalization)


def make_batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's batches from `start_step` on (data/mask_vos_clips.py)."""
  return mask_vos_clips.batches(config, start_step=start_step)


def initial_tree(config: ml_collections.ConfigDict) -> dict:
  """E, V and D as initialised by `config.seed` (a plain tree)."""
  init = functools.partial(init_state, model=build_model(config),
                           tx=optax.identity(), config=config)
  state = jax.jit(init)(jax.random.key(config.seed))
  return {"params": jax.device_get(state.params),
          "batch_stats": jax.device_get(state.batch_stats)}


def train_schedule(config: ml_collections.ConfigDict, workdir: str, *, train,
                   log=print, stop=None):
  """The whole run: phase 1, then clustering + full-loss rounds
  (methods/mask_vos_rounds.train_schedule); `train` is corrjax.train.train.
  """
  return mask_vos_rounds.train_schedule(
      config, workdir, train=train, model=build_model(config),
      initial_tree=lambda: initial_tree(config), log=log, stop=stop)


def _pseudo_labels(config: ml_collections.ConfigDict, workdir: str, *,
                   log=print) -> dict:
  return mask_vos_rounds.pseudo_labels_job(
      config, workdir, model=build_model(config),
      initial_tree=lambda: initial_tree(config), log=log)


JOBS = {"pseudo_labels": _pseudo_labels}


# The evaluation seam (methods/__init__.py).


def encoder(config: ml_collections.ConfigDict) -> features_lib.Encoder:
  """E's L2-normalised 128-d keys at stride 8, for label propagation."""
  model = build_model(config)
  name = config.data.normalization

  def apply(variables, frames):
    x = normalization.normalize(frames, name=name)
    return model.apply(variables, x, method=model.encode)["key"]

  return features_lib.Encoder(apply=apply, stride=8)


def encoder_variables(tree: dict) -> dict:
  """The whole network (E, V, D): `encoder` applies E, the mask predictor
  all three."""
  return {"params": tree["params"], "batch_stats": tree["batch_stats"]}


def predictor_settings(config: ml_collections.ConfigDict) -> dict:
  """What besides the evaluation protocol decides `mask_predictor`'s
  output (hashed into the results folder, evals/runner.py)."""
  return {"inference": config.inference.to_dict()}


def mask_predictor(config: ml_collections.ConfigDict, tree: dict):
  """Alg. 1 as a VOS predictor: frames uint8 [T, H, W, 3], first mask int
  [H, W] (ids 0..O, 255 void) -> int32 [T, H, W] ids.

  With `protocol.crop_size` > 0, frames are resized to that square as the
  propagation path resizes them (evals/labels.resize_frames; the first mask
  nearest) and the predicted ids are resized back (nearest). Frames are
  normalised and zero-padded at the bottom and right to a multiple of 8;
  references are frame 0 and the `protocol.context` previous frames;
  `config.inference.rounds` rounds of refinement
  (models/mask_vos_inference.py). Memory: the affinity is [21 h w, h w]
  floats per frame (3.5 GB at native 480p, 0.2 GB at 320 x 320).
  """
  model = build_model(config)
  variables = encoder_variables(tree)
  name = config.data.normalization

  def predict(frames: np.ndarray, first_mask: np.ndarray, protocol):
    size = protocol.crop_size
    if size > 0:
      height, width = frames.shape[1:3]
      ids = predict(labels_lib.resize_frames(frames, size, size),
                    labels_lib.resize_nearest(first_mask, size, size),
                    dataclasses.replace(protocol, crop_size=-1))
      ids = np.stack([labels_lib.resize_nearest(i, height, width)
                      for i in ids])
      ids[0] = first_mask
      return ids
    t, h, w = frames.shape[:3]
    first = np.where(first_mask == 255, 0, first_mask).astype(np.int32)
    num_objects = int(first.max())
    pad = ((0, 0), (0, (-h) % 8), (0, (-w) % 8))
    x = np.asarray(normalization.normalize(jnp.asarray(frames), name=name))
    x = np.pad(x, pad + ((0, 0),))
    first = np.pad(first, pad[1:])
    probs = mask_vos_inference.segment_video(
        model, variables, x, first, num_objects, context=protocol.context,
        rounds=config.inference.rounds)
    ids = np.argmax(probs[:, :, :h, :w], axis=1).astype(np.int32)
    ids[0] = first_mask
    return ids

  return predict
