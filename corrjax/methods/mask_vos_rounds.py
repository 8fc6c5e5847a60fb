"""Mask-VOS pseudo-labelling rounds and the two-phase schedule (paper §3.3).

Space-time clustering (Eq. 4, §3.1 Step 1) of every training video:
E's L2-normalised keys of all its frames (eval mode, frames resized to
`config.clustering.size`) concatenated with the 3D sinusoidal position
encoding (ops/kmeans.position_encoding_3d), batched k-means over videos
(M clusters, seeded k-means++, `num_steps` EM steps), clusters holding
more than `max_fraction` of the video's cells dropped; the rest, numbered
1.., are the pseudo objects. Written as palette PNGs at the frames' size,
`<out>/<video>/<frame:05d>.png`, with a Fig. S1-style picture per video
for the first `grid_videos` videos (`<out>/grids/<video>.png`: frames,
all clusters, kept pseudo masks) and `<out>/summary.json`. A round is
written to `<out>.tmp` and renamed when complete, so an interrupted round
is redone from scratch and a complete one is never rewritten.

The schedule (`train_schedule`), inside one run:
  phase 1: steps 1..schedule.corr_steps, L_corr only (seg weight 0);
  phase 2: rounds of schedule.recluster_every steps with the full loss
    (Eq. 16) at schedule.seg_learning_rate; before round k (k = 1, 2, ...)
    its pseudo masks are clustered with E of the checkpoint that ends the
    previous round (step start_k) into <workdir>/pseudo_masks/round_<k>.
Each round is one `train.train` call with total_steps = the round's end,
which resumes from the latest checkpoint and saves at the round's end;
masks already on disk are reused, so a resume never re-clusters with other
features.
"""

import copy
import functools
import json
import os
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from corrjax import checkpointing
from corrjax.data import mask_vos_clips
from corrjax.data import normalization
from corrjax.data import pseudo_masks
from corrjax.ops import kmeans


def _resize(frames: np.ndarray, size) -> np.ndarray:
  """uint8 [T, H, W, 3] -> [T, size[0], size[1], 3] (bilinear)."""
  if tuple(frames.shape[1:3]) == tuple(size):
    return frames
  return np.stack([np.asarray(Image.fromarray(f).resize(
      (size[1], size[0]), Image.Resampling.BILINEAR)) for f in frames])


def _check_size(size) -> tuple[int, int]:
  h, w = (int(s) for s in size)
  if h % 8 or w % 8 or h <= 0 or w <= 0:
    raise ValueError(f"config.clustering.size={tuple(size)} must be two "
                     "positive multiples of 8 (E's output stride).")
  return h, w


def cluster_videos(keys: np.ndarray, lengths, rng: jax.Array, *,
                   c: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Eq. 4 on a batch of videos' keys.

  Args:
    keys: float [V, T, h, w, D] E's keys, frames past a video's length
      are padding (weight 0).
    lengths: V frame counts.
    rng: PRNG key of k-means++.
    c: `config.clustering` (num_clusters, num_steps, pe_dim, pe_scale,
      max_fraction).

  Returns:
    {"clusters": int32 [V, T, h, w], "objects": int32 [V, T, h, w] pseudo
     masks (0 = background or dropped), "kept": bool [V, M], "inertia",
     "steps": [V]}.
  """
  v, t, h, w, _ = keys.shape
  x = kmeans.with_position_encoding(jnp.asarray(keys), c.pe_dim,
                                    scale=c.pe_scale)
  weights = (np.arange(t)[None, :] < np.asarray(lengths)[:, None])
  weights = np.repeat(weights.astype(np.float32), h * w, axis=1)
  out = kmeans.kmeans(rng, x.reshape(v, t * h * w, -1),
                      num_clusters=c.num_clusters, num_steps=c.num_steps,
                      weights=jnp.asarray(weights))
  objects, kept = kmeans.pseudo_labels(
      out["labels"], c.num_clusters, max_fraction=c.max_fraction,
      weights=jnp.asarray(weights))
  shape = (v, t, h, w)
  return {"clusters": np.asarray(out["labels"]).reshape(shape),
          "objects": np.asarray(objects).reshape(shape),
          "kept": np.asarray(kept), "inertia": np.asarray(out["inertia"]),
          "steps": np.asarray(out["steps"])}


@functools.partial(jax.jit, static_argnames=("model", "name"))
def _keys(variables, frames, *, model, name):
  """uint8 [B, H, W, 3] -> E's keys [B, H/8, W/8, D] (eval mode); compiled
  once per model and shape for every round of a process."""
  x = normalization.normalize(frames, name=name)
  return model.apply(variables, x, method=model.encode)["key"]


def cluster_round(config: ml_collections.ConfigDict, tree: dict, out: str, *,
                  model, log=print) -> dict:
  """Pseudo masks of every training video with E of `tree` into `out`.

  Args:
    config: the run's config (data: the videos; clustering: Eq. 4's
      settings, `size`, `videos_per_call`, `frame_batch`, `grid_videos`).
    tree: the state as a plain tree (params, batch_stats).
    model: the MaskVOSNet of `config` (methods.mask_vos.build_model).
    out: output folder; nothing is done when it exists (a finished round).
    log: progress messages.

  Returns:
    The summary: {video: {"frames", "kept", "objects", "inertia",
    "steps"}, "seconds": {...}}.
  """
  if os.path.isdir(out):
    with open(os.path.join(out, "summary.json")) as f:
      return json.load(f)
  c = config.clustering
  size = _check_size(c.size)
  source = mask_vos_clips.videos(config.data)
  variables = {"params": tree["params"], "batch_stats": tree["batch_stats"]}
  key_fn = functools.partial(_keys, variables, model=model,
                             name=config.data.normalization)
  lengths = [source.num_frames(v) for v in range(len(source))]
  t_max, fb = max(lengths), c.frame_batch
  tmp = out + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  summary, seconds = {}, {"features": 0.0, "kmeans": 0.0, "write": 0.0}
  rng = jax.random.key(config.seed)
  g = c.videos_per_call
  for start in range(0, len(source), g):
    group = list(range(start, min(start + g, len(source))))
    t0 = time.time()
    frames, keys = [], []
    for v in group:
      x = _resize(source.load(v, np.arange(lengths[v])), size)
      frames.append(x)
      pad = np.zeros((-(-t_max // fb) * fb - len(x),) + x.shape[1:],
                     np.uint8)
      x = np.concatenate([x, pad])
      keys.append(np.concatenate([np.asarray(key_fn(x[i:i + fb]))
                                  for i in range(0, len(x), fb)])[:t_max])
    while len(keys) < g:  # One compiled k-means for every group.
      keys.append(np.zeros_like(keys[0]))
    t1 = time.time()
    result = cluster_videos(np.stack(keys),
                            [lengths[v] for v in group] +
                            [1] * (g - len(group)),
                            jax.random.fold_in(rng, start), c=c)
    t2 = time.time()
    for i, v in enumerate(group):
      name = mask_vos_clips.video_name(source, v)
      t = lengths[v]
      full = source.load(v, [0]).shape[1:3]
      objects = result["objects"][i, :t]
      pseudo_masks.write_pseudo_masks(tmp, name, objects, size=full)
      if v < c.grid_videos:
        pseudo_masks.save_cluster_grid(
            os.path.join(tmp, "grids", f"{name}.png"), frames[i],
            result["clusters"][i, :t], objects,
            np.linspace(0, t - 1, min(5, t)).round().astype(int))
      summary[name] = {
          "frames": t, "kept": int(result["kept"][i].sum()),
          "object_fraction": float((objects > 0).mean()),
          "inertia": float(result["inertia"][i]),
          "steps": int(result["steps"][i])}
    seconds["features"] += t1 - t0
    seconds["kmeans"] += t2 - t1
    seconds["write"] += time.time() - t2
    log(f"clustered videos {group[0] + 1}-{group[-1] + 1}/{len(source)} "
        f"(k-means {t2 - t1:.2f}s)")
  summary["seconds"] = seconds
  with open(os.path.join(tmp, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  os.replace(tmp, out)
  return summary


def _tree_at(workdir: str, step: int, initial_tree) -> dict:
  """The checkpoint of `step`, or `initial_tree()` for step 0."""
  if not step:
    return initial_tree()
  return checkpointing.restore_tree(workdir, step)[1]


def pseudo_labels_job(config: ml_collections.ConfigDict, workdir: str, *,
                      model, initial_tree, log=print) -> dict:
  """`--mode=pseudo_labels`: cluster with the latest checkpoint's E (the
  initialisation `initial_tree()` when there is none) into
  <workdir>/pseudo_masks/job_step_<step>."""
  steps = checkpointing.complete_steps(workdir)
  step = steps[-1] if steps else 0
  out = os.path.join(workdir, "pseudo_masks", f"job_step_{step}")
  log(f"pseudo masks of step {step} -> {out}")
  return cluster_round(config, _tree_at(workdir, step, initial_tree), out,
                       model=model, log=log)


def rounds(config: ml_collections.ConfigDict) -> list[tuple[int, int, int]]:
  """(start, end, k) of each training call: k = 0 the correspondence-only
  phase, k >= 1 the full-loss rounds, each with its own pseudo masks."""
  s = config.schedule
  total, corr = config.total_steps, min(s.corr_steps, config.total_steps)
  if s.recluster_every <= 0:
    raise ValueError(f"config.schedule.recluster_every="
                     f"{s.recluster_every} must be positive.")
  out = [(0, corr, 0)] if corr else []
  for k, start in enumerate(range(corr, total, s.recluster_every), 1):
    out.append((start, min(start + s.recluster_every, total), k))
  return out


def round_dir(workdir: str, k: int) -> str:
  return os.path.join(workdir, "pseudo_masks", f"round_{k}")


def round_config(config: ml_collections.ConfigDict, workdir: str,
                 end: int, k: int) -> ml_collections.ConfigDict:
  """The config of the `train.train` call of round k, ending at `end`."""
  c = copy.deepcopy(config)
  c.total_steps = end
  if k == 0:
    c.loss.seg_weight = 0.0
    c.data.masks_dir = ""
  else:
    c.optim.learning_rate = config.schedule.seg_learning_rate
    c.data.masks_dir = round_dir(workdir, k)
  return c


def train_schedule(config: ml_collections.ConfigDict, workdir: str, *, train,
                   model, initial_tree, log=print, stop=None):
  """Phase 1, then clustering + full-loss rounds (module docstring).

  Args:
    config: the whole run (total_steps: the last step of the last round).
    workdir: the run's folder (checkpoints/, pseudo_masks/round_<k>/).
    train: `corrjax.train.train` (passed in: the training loop imports the
      methods, not the other way round).
    model: the MaskVOSNet of `config`.
    initial_tree: () -> the state of step 0 as a plain tree (clustering
      before any training, when schedule.corr_steps is 0).
    log: messages.
    stop: interrupts.StopRequest shared by every round.

  Returns:
    The final TrainState.
  """
  if config.optim.schedule == "cosine":
    raise ValueError("config.optim.schedule='cosine' decays over each "
                     "round's total_steps; use 'constant' or 'multistep' "
                     "with the Mask-VOS schedule.")
  plan = rounds(config)
  if not plan:
    raise ValueError("config.total_steps is 0: nothing to train.")
  steps = checkpointing.complete_steps(workdir)
  done = steps[-1] if steps else 0
  state = None
  for i, (start, end, k) in enumerate(plan):
    if end <= done and i < len(plan) - 1:
      continue
    if k:
      out = round_dir(workdir, k)
      if not os.path.isdir(out):
        log(f"round {k}: clustering with E of step {start} -> {out}")
        cluster_round(config, _tree_at(workdir, start, initial_tree), out,
                      model=model, log=log)
    state = train(round_config(config, workdir, end, k), workdir,
                  log=log, stop=stop)
  return state

