"""Deterministic video-clip pipeline on grain (CRW; later LIIR, Mask-VOS).

Clips, as in videowalk's training (`code/train.py:86-99,130-149`):
- Video files: torchvision `VideoClips` resamples each video to
  `frame_rate` fps (`--frame-skip 8`, "kinetics: fps",
  `code/utils/arguments.py:125`) by `_resample_video_idx` (frame
  floor(k * fps / frame_rate), or every (fps / frame_rate)-th frame when that
  ratio is an integer) and takes every window of `clip_len` consecutive
  resampled frames (`compute_clips(clip_len, 1, frame_rate)`, `train.py:131`).
  With `frame_rate` 0, files are treated like folders (`frame_stride`).
- Folders of frames and in-memory videos: videowalk's `VideoList` (its
  clip reader for frame folders, `train.py:104-112`; `video.py:46-72`)
  takes frames start + i * gap, i < clip_len, start in
  [0, F - clip_len * gap]; gap is `frame_stride` here. (VideoList shrinks
  the gap of a too-short video; here such videos are skipped.)
- `RandomClipSampler(video_clips, clips_per_video)` (`train.py:135-139`):
  each epoch takes min(clips_per_video, #clips) distinct random clips of
  every video and shuffles them all. Here epoch k = examples [k E, (k+1) E),
  E = sum over videos of min(clips_per_video, #clips), so epochs run on
  across batch boundaries (the reference's last partial batch is not made).
  The same sampler serves folders (VideoList's RandomSampler, `train.py:141`,
  is clips_per_video = 1).
- Each clip then goes through crw_augment.crw_patches (independent crops
  per frame and per patch; the evidence is in that module's docstring).

Determinism: global example e = (step - 1) * global_batch + position
(`data/sampler.py`) feeds independent generators (epoch order, per-video
clip choice, retries, crops) seeded by (seed, stream, ...), so the batch of
a step is a pure function of (seed, step) and the data, and a resumed run
needs no iterator state. Videos that cannot be indexed,
or are too short for one clip, are skipped; a clip that fails to decode is
replaced by a clip drawn from the example's retry generator, so the result
still depends only on (seed, step) and the files. Either way the video gets
one warning and a place in `bad_frames`.
"""

import glob
import math
import os
import re
import threading

import ml_collections
import numpy as np
from PIL import Image

from corrjax.data import crw_augment
from corrjax.data import frames as frames_lib
from corrjax.data import sampler as sampler_lib
from corrjax.data import synthetic
from corrjax.data import video_files

_MAX_BAD_CLIPS_PER_EXAMPLE = 100
# Generator streams: seeds are (seed, stream, ...).
_ORDER, _CHOICE, _RETRY, _AUGMENT = range(4)


class ArrayVideos:
  """Videos held in memory (the embedded synthetic set).

  Args:
    videos: V arrays uint8 [F_v, H, W, 3].
    names: V names used in messages.
  """

  fps = None  # Frame rate unknown: clips use frame_stride.

  def __init__(self, videos, names):
    for v in videos:
      if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8:
        raise ValueError(f"videos must be uint8 [F, H, W, 3], got {v.dtype} "
                         f"{v.shape}.")
    self._videos, self._names = list(videos), list(names)
    self.errors = {}

  def __len__(self) -> int:
    return len(self._videos)

  def describe(self, video: int) -> str:
    return self._names[video]

  def num_frames(self, video: int) -> int:
    return len(self._videos[video])

  def load(self, video: int, frames) -> np.ndarray:
    return self._videos[video][np.asarray(frames)]


def _natural_key(path: str):
  """'9.jpg' before '10.jpg' (VideoList sorts frame numbers as integers)."""
  return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path)]


class FolderVideos:
  """Folders of frames, one video per folder (DAVIS, YouTube-VOS layouts).

  Args:
    root: dataset folder.
    pattern: glob of frame files relative to `root`, e.g. '*/*.jpg' with
      root `DAVIS/JPEGImages/480p`; frames are grouped by their folder and
      sorted by name with numbers compared as numbers.
  """

  fps = None

  def __init__(self, root: str, pattern: str = "*/*"):
    if not root or not os.path.isdir(root):
      raise FileNotFoundError(f"frame folder {root!r} does not exist.")
    videos = {}
    for p in glob.glob(os.path.join(root, pattern), recursive=True):
      if p.lower().endswith(frames_lib.IMAGE_EXTENSIONS) and os.path.isfile(p):
        videos.setdefault(os.path.dirname(p), []).append(p)
    if not videos:
      raise FileNotFoundError(
          f"no .jpg/.jpeg/.png frames match {pattern!r} under {root!r}.")
    self.folders = sorted(videos)
    self._frames = [sorted(videos[f], key=_natural_key) for f in self.folders]
    self.errors = {}

  def __len__(self) -> int:
    return len(self.folders)

  def describe(self, video: int) -> str:
    return self.folders[video]

  def num_frames(self, video: int) -> int:
    return len(self._frames[video])

  def load(self, video: int, frames) -> np.ndarray:
    """uint8 [K, H, W, 3]; raises OSError or a PIL error if unreadable."""
    images = []
    for k in frames:
      with Image.open(self._frames[video][k]) as image:
        images.append(np.asarray(image.convert("RGB")))
    return np.stack(images)


def resample_frames(num_frames: int, fps: float,
                    frame_rate: float) -> np.ndarray:
  """torchvision's `VideoClips._resample_video_idx`: frames at `frame_rate`.

  Returns:
    int64 [L] indices of the frames kept from a video of `num_frames` at
    `fps`; float32 arithmetic as torchvision's, and a plain stride when
    fps / frame_rate is an integer.
  """
  step = float(fps) / frame_rate
  if step.is_integer():
    return np.arange(0, num_frames, int(step), dtype=np.int64)
  count = int(math.floor(num_frames * (float(frame_rate) / fps)))
  return np.floor(np.arange(count, dtype=np.float32)
                  * np.float32(step)).astype(np.int64)


class EpochClipSampler:
  """`RandomClipSampler` over an endless, index-addressed example stream.

  Args:
    num_clips: int [V] clips available per video (0: never sampled).
    clips_per_video: clips taken from each video per epoch (at most).
    seed: data seed.
  """

  def __init__(self, num_clips, clips_per_video: int, seed: int):
    self._num_clips = np.asarray(num_clips, np.int64)
    self._taken = np.minimum(self._num_clips, clips_per_video)
    self._ends = np.cumsum(self._taken)
    self.epoch_size = int(self._ends[-1]) if len(self._ends) else 0
    if not self.epoch_size:
      raise ValueError("no video holds a whole clip.")
    self._seed = seed
    self._orders = {}
    self._lock = threading.Lock()

  def _order(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._orders:
        if len(self._orders) >= 4:  # Threads span few epochs at a time.
          del self._orders[min(self._orders)]
        rng = np.random.default_rng([self._seed, _ORDER, epoch])
        self._orders[epoch] = rng.permutation(self.epoch_size)
      return self._orders[epoch]

  def _video_of(self, slot: int) -> int:
    return int(np.searchsorted(self._ends, slot, side="right"))

  def __call__(self, example: int) -> tuple[int, int]:
    """(video, clip) of a global example index."""
    epoch, position = divmod(int(example), self.epoch_size)
    slot = int(self._order(epoch)[position])
    video = self._video_of(slot)
    j = slot - int(self._ends[video] - self._taken[video])
    rng = np.random.default_rng([self._seed, _CHOICE, epoch, video])
    return video, int(rng.permutation(self._num_clips[video])[j])

  def any_clip(self, rng: np.random.Generator) -> tuple[int, int]:
    """A replacement (video, clip), videos weighted as in an epoch."""
    video = self._video_of(int(rng.integers(self.epoch_size)))
    return video, int(rng.integers(self._num_clips[video]))


class ClipLoader:
  """Global example index -> its clip's frames (`load`, `examples`).

  Args:
    videos: a source with `__len__`, `describe(v)`, `num_frames(v)`,
      `load(v, frames)`, `fps` (None or float [V]) and `errors` ({v: msg}).
    clip_len: T frames per clip.
    frame_stride: gap between clip frames where no frame rate applies.
    frame_rate: target fps for sources with `fps` (0: use frame_stride).
    clips_per_video: clips per video per epoch.
    seed: data seed.

  Attributes:
    bad_frames: descriptions of the videos skipped (unreadable or too
      short) or with clips that failed to load, so far (name shared with
      pipeline.TwoViewCrops, which train.py reports).
  """

  def __init__(self, videos, *, clip_len: int, frame_stride: int,
               frame_rate: float, clips_per_video: int, seed: int):
    for name, value in (("clip_len", clip_len), ("frame_stride", frame_stride),
                        ("clips_per_video", clips_per_video)):
      if value < 1:
        raise ValueError(f"data.{name} must be >= 1, got {value}.")
    self._videos, self._clip_len, self._seed = videos, clip_len, seed
    self._stride, self._rate = frame_stride, frame_rate
    self._lock = threading.Lock()
    self._bad_videos = sampler_lib.BadItems()
    self._bad_clips = set()
    num_clips = []
    for v in range(len(videos)):
      timeline, gap = self._timeline(v)
      num_clips.append(max(0, len(timeline) - clip_len * gap + 1))
      if v in videos.errors:
        self._report_bad(v, "skipping video", videos.errors[v])
      elif not num_clips[-1]:
        self._report_bad(v, "skipping video", (
            f"too short: {videos.num_frames(v)} frames, a clip needs "
            f"{clip_len} frames {gap} apart on its timeline"))
    try:
      self.sampler = EpochClipSampler(num_clips, clips_per_video, seed)
    except ValueError:
      raise ValueError(f"none of the {len(videos)} videos holds a clip of "
                       f"{clip_len} frames (see warnings).") from None

  def _timeline(self, video: int) -> tuple[np.ndarray, int]:
    """(int [L] frames clips are cut from, gap between clip frames on it)."""
    count = self._videos.num_frames(video)
    fps = None if self._videos.fps is None else self._videos.fps[video]
    if fps and self._rate > 0:
      return resample_frames(count, fps, self._rate), 1
    return np.arange(count), self._stride

  def clip_frames(self, video: int, clip: int) -> np.ndarray:
    """int [T] frame indices of clip `clip` of `video`."""
    timeline, gap = self._timeline(video)
    return timeline[clip + gap * np.arange(self._clip_len)]

  @property
  def bad_frames(self) -> set[str]:
    """Descriptions of the videos with problems so far."""
    return {self._videos.describe(v) for v in self._bad_videos.keys()}

  def _report_bad(self, video: int, action: str, why: str) -> None:
    """Counts a video with unreadable parts; warns the first time."""
    self._bad_videos.record(
        video, "%s %s: %s; %d videos with problems so far", action,
        self._videos.describe(video), why)

  def load(self, example: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(video, frame indices [T], uint8 frames [T, H, W, 3]) of an example.

    A clip that fails to load is replaced by `sampler.any_clip`. Only that
    clip is remembered as bad, not its whole video: whether a clip loads
    depends on the files alone, never on which thread failed first.
    """
    rng = np.random.default_rng([self._seed, _RETRY, int(example)])
    video, clip = self.sampler(example)
    for _ in range(_MAX_BAD_CLIPS_PER_EXAMPLE):
      if (video, clip) not in self._bad_clips:
        frames = self.clip_frames(video, clip)
        try:
          return video, frames, self._videos.load(video, frames)
        except sampler_lib.UNREADABLE_ERRORS as e:
          with self._lock:
            self._bad_clips.add((video, clip))
          self._report_bad(video, "skipping unreadable clips of", str(e))
      video, clip = self.sampler.any_clip(rng)
    raise OSError(f"{_MAX_BAD_CLIPS_PER_EXAMPLE} unreadable clips in a row "
                  f"({len(self._bad_videos)} of {len(self._videos)} videos "
                  "bad); is the data folder corrupt?")

  def examples(self, transform):
    """Global example index -> transform(example, its clip's frames).

    Args:
      transform: (example index, uint8 [T, H, W, 3]) -> dict of arrays.
    """
    return lambda example: transform(int(example), self.load(example)[2])


def clip_videos(data: ml_collections.ConfigDict):
  """The video source named by a clip data config (`clip_data`)."""
  if data.source == "synthetic":
    s = data.synthetic
    videos = synthetic.make_videos(
        s.seed, num_videos=s.num_videos, num_frames=s.num_frames,
        height=s.height, width=s.width, max_objects=s.max_objects)
    return ArrayVideos([v.frames for v in videos], [v.name for v in videos])
  if data.source not in ("folder", "video"):
    raise ValueError(f"Unknown data.source {data.source!r}; expected "
                     "'folder', 'video' or 'synthetic'.")
  if not data.root:
    raise ValueError("config.data.root is empty: point it at the videos, "
                     "e.g. --config.data.root=/data/kinetics/train_256.")
  if data.source == "folder":
    return FolderVideos(data.root, data.pattern or "*/*")
  return video_files.VideoFiles(data.root, data.pattern or "**/*.mp4",
                                cache_path=data.index_cache,
                                num_threads=data.num_threads)


def clip_loader(data: ml_collections.ConfigDict, *, seed: int) -> ClipLoader:
  """The ClipLoader of a clip data config."""
  return ClipLoader(clip_videos(data), clip_len=data.clip_len,
                    frame_stride=data.frame_stride, frame_rate=data.frame_rate,
                    clips_per_video=data.clips_per_video, seed=seed)


def crw_batches(data: ml_collections.ConfigDict, *, global_batch_size: int,
                start_step: int, total_steps: int, seed: int):
  """CRW's training batches (see crw_augment) for steps start_step + 1 ...

  Returns:
    (iterator of {"patches": uint8 [B_host, T, N, P, P, 3]}, the ClipLoader,
    whose `bad_frames` lists skipped videos).
  """
  loader = clip_loader(data, seed=seed)
  crw_augment.grid_origins(data.crop_size, data.patch_size, data.patch_stride)

  def transform(example, frames):
    rng = np.random.default_rng([seed, _AUGMENT, example])
    return {"patches": crw_augment.crw_patches(
        rng, frames, crop_size=data.crop_size, crop_scale=data.crop_scale,
        crop_ratio=data.crop_ratio, patch_size=data.patch_size,
        patch_stride=data.patch_stride, patch_scale=data.patch_scale,
        patch_ratio=data.patch_ratio)}

  batches = sampler_lib.host_batches(
      loader.examples(transform), global_batch_size=global_batch_size,
      start_step=start_step, total_steps=total_steps,
      num_threads=data.num_threads, prefetch=data.prefetch)
  return batches, loader
