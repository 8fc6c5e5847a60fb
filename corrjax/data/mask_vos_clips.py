"""Mask-VOS training examples: frame triplets with pseudo masks, frame pairs.

One example (paper §3.3 "Training"; Li et al., CVPR 2023) is drawn from one
video:
- L_seg: N + 1 distinct frames in time order, the last the query, with
  their pseudo masks (`<masks_dir>/<video>/<frame:05d>.png`, written by
  methods/mask_vos_rounds.py; none before the first clustering: all
  background, every object invalid, and the config's seg weight is 0);
- L_short: frames t, t + 1;
- L_long: frames t, t' with t' - t >= `long_gap` (5 in the paper).
All frames and masks of an example share one random square crop (side a
fraction `crop_scale` of the frame's short side) and one random h-flip,
resized to `crop_size` (bilinear for frames, nearest for masks); Phi
(ops/view_warp.py) is drawn later, in the train step.

Determinism: example e uses np.random.default_rng([seed, 7, e]) for its
video, frames and crop; the batch of train step s is a pure function of
(seed, s), the frames and the mask folder (`data/sampler.host_batches`),
so a resumed run needs no iterator state.

Videos: `source` 'folder' (one video per folder of frames under `root`,
e.g. DAVIS `JPEGImages/240p`) or 'synthetic' (the embedded videos of
data/synthetic.py, `config.data.synthetic`).
"""

import os

import ml_collections
import numpy as np
from PIL import Image

from corrjax.data import clips
from corrjax.data import sampler as sampler_lib
from corrjax.data import synthetic

_STREAM = 7  # Generator stream of these examples: seeds (seed, 7, e).


def videos(data: ml_collections.ConfigDict):
  """The training videos of `config.data` (ArrayVideos or FolderVideos)."""
  if data.source == "synthetic":
    s = data.synthetic
    made = synthetic.make_videos(
        s.seed, num_videos=s.num_videos, num_frames=s.num_frames,
        height=s.height, width=s.width, max_objects=s.max_objects)
    return clips.ArrayVideos([v.frames for v in made],
                             [v.name for v in made])
  if data.source != "folder":
    raise ValueError(f"Unknown data.source {data.source!r} for Mask-VOS; "
                     "expected 'folder' or 'synthetic'.")
  if not data.root:
    raise ValueError("config.data.root is empty: point it at the frame "
                     "folders, e.g. --config.data.root=$CORRJAX_DATA/"
                     "davis2016/JPEGImages/240p.")
  return clips.FolderVideos(data.root, data.pattern or "*/*")


def video_name(source, video: int) -> str:
  """The folder name of a video's pseudo masks."""
  return os.path.basename(os.path.normpath(source.describe(video)))


def frames_needed(data: ml_collections.ConfigDict) -> int:
  """Fewest frames a video needs for one example."""
  return max(data.num_refs + 1, data.long_gap + 1, 2)


def _crop_resize(images: np.ndarray, box, size: int, flip: bool,
                 resample) -> np.ndarray:
  """[K, H, W(, 3)] -> [K, size, size(, 3)]: crop `box` (x, y, side)."""
  x, y, side = box
  out = []
  for im in images:
    pil = Image.fromarray(im[y:y + side, x:x + side])
    arr = np.asarray(pil.resize((size, size), resample))
    out.append(arr[:, ::-1] if flip else arr)
  return np.stack(out)


def choose_frames(rng: np.random.Generator, num_frames: int, num_refs: int,
                  long_gap: int) -> dict[str, np.ndarray]:
  """Frame indices of one example: seg [N + 1], short [2], long [2]."""
  seg = np.sort(rng.choice(num_frames, num_refs + 1, replace=False))
  short = int(rng.integers(0, num_frames - 1))
  first = int(rng.integers(0, num_frames - long_gap))
  far = int(rng.integers(first + long_gap, num_frames))
  return {"seg": seg, "short": np.array([short, short + 1]),
          "long": np.array([first, far])}


class Examples:
  """example index -> one Mask-VOS example (see module docstring).

  Args:
    data: `config.data` (num_refs, num_objects, long_gap, crop_size,
      crop_scale, masks_dir).
    seed: the run's seed.
    source: the videos (`videos(data)`).
  """

  def __init__(self, data: ml_collections.ConfigDict, *, seed: int, source):
    self.data, self.seed, self.source = data, seed, source
    self.bad_frames = sampler_lib.BadItems()
    need = frames_needed(data)
    self.usable = [v for v in range(len(source))
                   if source.num_frames(v) >= need]
    if not self.usable:
      raise ValueError(f"no training video has the {need} frames one "
                       "example needs (data.num_refs + 1, data.long_gap + "
                       "1).")
    self.masks_dir = data.get("masks_dir", "")

  def _masks(self, video: int, frames: np.ndarray) -> np.ndarray:
    folder = os.path.join(self.masks_dir, video_name(self.source, video))
    out = []
    for t in frames:
      with Image.open(os.path.join(folder, f"{t:05d}.png")) as im:
        out.append(np.asarray(im))
    return np.stack(out)

  def __call__(self, example: int) -> dict[str, np.ndarray]:
    d = self.data
    rng = np.random.default_rng([self.seed, _STREAM, int(example)])
    video = self.usable[int(rng.integers(len(self.usable)))]
    idx = choose_frames(rng, self.source.num_frames(video), d.num_refs,
                        d.long_gap)
    order = np.concatenate([idx["seg"], idx["short"], idx["long"]])
    frames = self.source.load(video, order)
    h, w = frames.shape[1:3]
    lo, hi = d.crop_scale
    side = max(1, int(round(min(h, w) * rng.uniform(lo, hi))))
    box = (int(rng.integers(0, w - side + 1)),
           int(rng.integers(0, h - side + 1)), side)
    flip = bool(rng.random() < 0.5)
    frames = _crop_resize(frames, box, d.crop_size, flip,
                          Image.Resampling.BILINEAR)
    n = d.num_refs + 1
    o = d.num_objects
    if self.masks_dir:
      masks = self._masks(video, idx["seg"])
      if masks.shape[1:] != (h, w):
        raise ValueError(
            f"pseudo masks of {video_name(self.source, video)!r} are "
            f"{masks.shape[1:]}, its frames {(h, w)}.")
      if masks.max() > o:
        raise ValueError(f"pseudo mask id {masks.max()} > data.num_objects="
                         f"{o} in {self.masks_dir!r}.")
      masks = _crop_resize(masks, box, d.crop_size, flip,
                           Image.Resampling.NEAREST).astype(np.int32)
      valid = np.isin(np.arange(1, o + 1), masks)
    else:
      masks = np.zeros((n, d.crop_size, d.crop_size), np.int32)
      valid = np.zeros((o,), bool)
    return {"seg_frames": frames[:n], "seg_masks": masks,
            "object_valid": valid, "short_frames": frames[n:n + 2],
            "long_frames": frames[n + 2:]}


def batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's batches of train steps start_step + 1 .. total_steps.

  Returns:
    (iterator of {"seg_frames": uint8 [B, N+1, S, S, 3], "seg_masks": int32
    [B, N+1, S, S], "object_valid": bool [B, O], "short_frames", "long_
    frames": uint8 [B, 2, S, S, 3]}, the Examples with `bad_frames`).
  """
  d = config.data
  examples = Examples(d, seed=config.seed, source=videos(d))
  it = sampler_lib.host_batches(
      examples, global_batch_size=d.batch_size, start_step=start_step,
      total_steps=config.total_steps, num_threads=d.num_threads,
      prefetch=d.prefetch)
  return it, examples
