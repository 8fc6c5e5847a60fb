"""LIIR's training input: frame pairs in Lab with colour dropout.

Reference: shasha521/LIIR_pytorch@21c7ba5
`functional/feeder/dataset/YouTubeVOSTrain.py` (`dataloader` 7-45),
`functional/feeder/dataset/YTVOSTrainLoader.py` (`image_loader` 15-39,
`lab_preprocess` 41-48, `__getitem__` 57-65) and `main_dis.py`
(`dropout2d_lab` 153-162, `compute_lphoto` 215-222).

Epoch k (the reference rebuilds its list every epoch):
- every video v draws an interval i_v from {2, 5, 8} with p = (.4, .4, .2)
  (`YouTubeVOSTrain.py:26`); its frames 0, i_v, 2 i_v, ... are cut into
  disjoint consecutive pairs (f, f + i_v), an odd last frame dropped
  (`:31-41`); the first frame of a pair is the reference, the second the
  target (`compute_lphoto`: refs = all but the last);
- videos are visited in a random order and their pairs concatenated; the
  first `pairs_per_epoch` (69,600) are kept (`:14-19,45`), then shuffled
  (DistributedSampler(shuffle=True), `main_dis.py:143`). Epoch sizes vary
  when a list is shorter than the cap.
Global example e = (step - 1) B + position is the e-th pair of the
concatenated epochs, so a batch is a pure function of (seed, step) and the
data; host p of n builds positions [p B / n, (p + 1) B / n). A pair that
fails to load is replaced by one drawn from the example's retry generator;
its video is warned about once and counted in `bad_frames`.

Each frame: RGB / 255 as float32, resized to 256 x 256 like
`cv2.resize(INTER_LINEAR)` (half-pixel bilinear, no antialias), converted to
Lab like `cv2.cvtColor(COLOR_BGR2Lab)` on float images (L in [0, 100], a, b
in about [-127, 127]) and normalised by mean (50, 0, 0), std (50, 127, 127)
to about [-1, 1] (`YTVOSTrainLoader.py:37,41-48`). Nothing is cropped,
flipped or jittered.

Colour dropout (`dropout2d_lab`): one of a, b, the same for the whole
global batch of a step (the reference draws once per step and GPU), is the
label of both frames; it is zeroed in both inputs and the inputs are scaled
by 3 / 2.
"""

import logging
import threading

import ml_collections
import numpy as np

from corrjax.data import clips
from corrjax.data import sampler
from corrjax.ops import torch_resize

LAB_MEAN = np.array([50.0, 0.0, 0.0], np.float32)
LAB_STD = np.array([50.0, 127.0, 127.0], np.float32)
# Generator streams: seeds are (seed, stream, ...).
_INTERVAL, _ORDER, _SHUFFLE, _RETRY, _DROP = range(5)
_MAX_BAD_PAIRS_PER_EXAMPLE = 100


def resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`cv2.resize(image, (w, h), interpolation=INTER_LINEAR)` on floats.

  Half-pixel source coordinates clamped to the image, no antialiasing: the
  same arithmetic as PyTorch's bilinear (ops/torch_resize.py).

  Args:
    image: float32 [H, W, C].
    size: (h, w).
  """
  mh = torch_resize.interpolation_matrix(image.shape[0], size[0], "bilinear")
  mw = torch_resize.interpolation_matrix(image.shape[1], size[1], "bilinear")
  h, w, c = image.shape
  rows = (mh @ image.reshape(h, w * c)).reshape(size[0], w, c)
  return np.einsum("qw,pwc->pqc", mw, rows, optimize=True).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray, xp=np) -> np.ndarray:
  """OpenCV's float RGB -> Lab (sRGB, D65 white), as `cv2.cvtColor`.

  The exact formulas of OpenCV's documentation; OpenCV itself interpolates
  a lookup table on float inputs, so it differs from these by up to about
  0.4 L/a/b units (tests/data/frame_pairs_test.py).

  Args:
    rgb: float32 [..., 3] in [0, 1].
    xp: numpy (float64 inside, as here for training) or jax.numpy (float32,
      jit-able: the LIIR encoder at evaluation).

  Returns:
    float32 [..., 3]: L in [0, 100], a and b in about [-127, 127].
  """
  rgb = xp.clip(rgb.astype(np.float64 if xp is np else np.float32), 0.0,
                1.0)
  linear = xp.where(rgb <= 0.04045, rgb / 12.92,
                    ((rgb + 0.055) / 1.055) ** 2.4)
  m = xp.array([[0.412453, 0.357580, 0.180423],
                [0.212671, 0.715160, 0.072169],
                [0.019334, 0.119193, 0.950227]])
  xyz = linear @ m.T
  xyz = xyz / xp.array([0.950456, 1.0, 1.088754])
  f = xp.where(xyz > 0.008856, xp.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
  y = xyz[..., 1]
  lightness = xp.where(y > 0.008856, 116.0 * f[..., 1] - 16.0, 903.3 * y)
  a = 500.0 * (f[..., 0] - f[..., 1])
  b = 200.0 * (f[..., 1] - f[..., 2])
  return xp.stack([lightness, a, b], -1).astype(np.float32)


def lab_frame(frame: np.ndarray, size: int) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> normalised Lab float32 [size, size, 3]."""
  image = resize_linear(frame.astype(np.float32) / 255.0, (size, size))
  return (rgb_to_lab(image) - LAB_MEAN) / LAB_STD


def colour_dropout(reference: np.ndarray, target: np.ndarray,
                   channel: int) -> dict[str, np.ndarray]:
  """`dropout2d_lab` and the labels of `compute_lphoto` (`main_dis.py`).

  Args:
    reference, target: float32 [H, W, 3] normalised Lab.
    channel: 1 (a) or 2 (b), the channel dropped.

  Returns:
    {"reference", "target": float32 [H, W, 3] inputs (channel zeroed,
    times 3/2); "reference_label", "target_label": float32 [H, W, 1], the
    dropped channel before dropout}.
  """
  if channel not in (1, 2):
    raise ValueError(f"dropped channel must be 1 (a) or 2 (b), got {channel}.")
  out = {}
  for name, image in (("reference", reference), ("target", target)):
    out[f"{name}_label"] = image[..., channel:channel + 1].copy()
    dropped = image.copy()
    dropped[..., channel] = 0.0
    out[name] = dropped * np.float32(3.0 / 2.0)
  return out


class PairSampler:
  """Global example index -> (video, reference frame, target frame).

  Args:
    num_frames: int [V] frames per video (0: never sampled).
    intervals: frame intervals to draw from ((2, 5, 8)).
    probs: their probabilities ((.4, .4, .2)).
    pairs_per_epoch: pairs kept per epoch (69,600; 0: all).
    seed: data seed.
  """

  def __init__(self, num_frames, *, intervals=(2, 5, 8),
               probs=(0.4, 0.4, 0.2), pairs_per_epoch: int = 69_600,
               seed: int = 0):
    self._frames = np.asarray(num_frames, np.int64)
    self._intervals = np.asarray(intervals, np.int64)
    self._probs = np.asarray(probs, np.float64)
    if (len(self._intervals) != len(self._probs) or
        np.any(self._intervals < 1) or abs(self._probs.sum() - 1) > 1e-6):
      raise ValueError(f"intervals {tuple(intervals)} need positive values "
                       f"and probabilities summing to 1, got {tuple(probs)}.")
    if not np.any(self._frames > self._intervals.max()):
      raise ValueError("no video is long enough for a pair at every "
                       f"interval {tuple(intervals)}.")
    self._cap = int(pairs_per_epoch)
    self._seed = seed
    self._lock = threading.Lock()
    self._starts = [0]  # Global index of each epoch's first example.
    self._epochs = {}

  def _intervals_of(self, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([self._seed, _INTERVAL, epoch])
    return rng.choice(self._intervals, size=len(self._frames), p=self._probs)

  def _counts(self, intervals: np.ndarray) -> np.ndarray:
    """Pairs per video: len(arange(0, F, i)) // 2 (`:31-34`)."""
    return (-(-self._frames // intervals)) // 2

  def epoch_size(self, epoch: int) -> int:
    total = int(self._counts(self._intervals_of(epoch)).sum())
    return min(total, self._cap) if self._cap > 0 else total

  def _epoch(self, epoch: int) -> np.ndarray:
    """int64 [E, 3] (video, first frame, interval) in example order."""
    with self._lock:
      if epoch not in self._epochs:
        if len(self._epochs) >= 4:
          del self._epochs[min(self._epochs)]
        intervals = self._intervals_of(epoch)
        counts = self._counts(intervals)
        order = np.random.default_rng(
            [self._seed, _ORDER, epoch]).permutation(len(self._frames))
        pairs = [np.stack([np.full(counts[v], v),
                           2 * intervals[v] * np.arange(counts[v]),
                           np.full(counts[v], intervals[v])], 1)
                 for v in order if counts[v]]
        pairs = np.concatenate(pairs)[:self.epoch_size(epoch)]
        shuffle = np.random.default_rng([self._seed, _SHUFFLE, epoch])
        self._epochs[epoch] = pairs[shuffle.permutation(len(pairs))]
      return self._epochs[epoch]

  def locate(self, example: int) -> tuple[int, int]:
    """(epoch, position in it) of a global example index."""
    with self._lock:
      while self._starts[-1] <= example:
        k = len(self._starts) - 1
        self._starts.append(self._starts[-1] + self.epoch_size(k))
      epoch = int(np.searchsorted(self._starts, example, side="right")) - 1
      return epoch, int(example - self._starts[epoch])

  def __call__(self, example: int) -> tuple[int, int, int]:
    """(video, reference frame, target frame) of example `example`."""
    epoch, position = self.locate(int(example))
    video, first, interval = self._epoch(epoch)[position]
    return int(video), int(first), int(first + interval)

  def any_pair(self, rng: np.random.Generator) -> tuple[int, int, int]:
    """A replacement pair: a random pair of a random epoch-0 position."""
    return self(int(rng.integers(self.epoch_size(0))))


class PairLoader:
  """Callable: global example index -> one training pair.

  Args:
    videos: a source as data/clips.py's (`__len__`, `describe(v)`,
      `num_frames(v)`, `load(v, frames)`, `errors`).
    global_batch_size: examples per step (one dropped channel per step).
    size: output side (256).
    intervals, probs, pairs_per_epoch: see PairSampler.
    seed: data seed.

  Attributes:
    bad_frames: videos with unreadable frames (or unindexable), so far.
  """

  def __init__(self, videos, *, global_batch_size: int, size: int = 256,
               intervals=(2, 5, 8), probs=(0.4, 0.4, 0.2),
               pairs_per_epoch: int = 69_600, seed: int = 0):
    self._videos, self._seed, self._size = videos, seed, size
    self._batch = global_batch_size
    self._lock = threading.Lock()
    self._bad_pairs = set()
    self.bad_frames: set[str] = set()
    counts = []
    for v in range(len(videos)):
      if v in videos.errors:
        self._report_bad(v, videos.errors[v])
        counts.append(0)
      else:
        counts.append(videos.num_frames(v))
    self.sampler = PairSampler(counts, intervals=intervals, probs=probs,
                               pairs_per_epoch=pairs_per_epoch, seed=seed)

  def _report_bad(self, video: int, why: str) -> None:
    with self._lock:
      first_time = self._videos.describe(video) not in self.bad_frames
      self.bad_frames.add(self._videos.describe(video))
      count = len(self.bad_frames)
    if first_time:
      logging.warning("skipping unreadable frames of %s: %s; %d videos with "
                      "problems so far", self._videos.describe(video), why,
                      count)

  def load(self, example: int) -> tuple[int, np.ndarray]:
    """(video, uint8 [2, H, W, 3] reference and target frames)."""
    rng = np.random.default_rng([self._seed, _RETRY, int(example)])
    pair = self.sampler(example)
    for _ in range(_MAX_BAD_PAIRS_PER_EXAMPLE):
      if pair not in self._bad_pairs:
        try:
          return pair[0], self._videos.load(pair[0], list(pair[1:]))
        except (OSError, ValueError, SyntaxError) as e:  # PIL, PyAV errors.
          with self._lock:
            self._bad_pairs.add(pair)
          self._report_bad(pair[0], str(e))
      pair = self.sampler.any_pair(rng)
    raise OSError(f"{_MAX_BAD_PAIRS_PER_EXAMPLE} unreadable pairs in a row; "
                  "is the data folder corrupt?")

  def channel(self, example: int) -> int:
    """The dropped channel (1 or 2) of the step holding `example`."""
    step = int(example) // self._batch
    return int(np.random.default_rng([self._seed, _DROP, step])
               .integers(1, 3))

  def __call__(self, example: int) -> dict[str, np.ndarray]:
    video, frames = self.load(example)
    reference, target = (lab_frame(f, self._size) for f in frames)
    out = colour_dropout(reference, target, self.channel(example))
    out["video_id"] = np.int32(video)
    return out


def pair_batches(data: ml_collections.ConfigDict, *, global_batch_size: int,
                 start_step: int, total_steps: int, seed: int):
  """This host's LIIR batches for steps start_step + 1 .. total_steps.

  Args:
    data: a clip data config (data/clips.py `clip_videos`: source, root,
      pattern, synthetic, index_cache, num_threads, prefetch) plus size,
      intervals, interval_probs, pairs_per_epoch.
    global_batch_size: pairs per step over all hosts.
    start_step: the last step already done (0 for a fresh run).
    total_steps: the last step.
    seed: data seed.

  Returns:
    (iterator of {"reference", "target": float32 [B_host, S, S, 3];
    "reference_label", "target_label": float32 [B_host, S, S, 1];
    "video_id": int32 [B_host]}, the PairLoader, whose `bad_frames` lists
    the videos skipped).
  """
  loader = PairLoader(
      clips.clip_videos(data), global_batch_size=global_batch_size,
      size=data.size, intervals=tuple(data.intervals),
      probs=tuple(data.interval_probs), pairs_per_epoch=data.pairs_per_epoch,
      seed=seed)

  batches = sampler.host_batches(
      loader, global_batch_size=global_batch_size, start_step=start_step,
      total_steps=total_steps, num_threads=data.num_threads,
      prefetch=data.prefetch)
  return batches, loader


def pair_data(**overrides) -> ml_collections.ConfigDict:
  """Default data config of `pair_batches` (LIIR_pytorch's settings)."""
  c = ml_collections.ConfigDict(dict(
      source="folder",  # 'folder' (of frames), 'video' (files), 'synthetic'.
      root="",  # e.g. youtube-vos/train_all_frames/JPEGImages.
      pattern="",  # Glob under root; '' picks '*/*' or '**/*.mp4'.
      index_cache="",
      synthetic=ml_collections.ConfigDict(dict(
          seed=1, num_videos=16, num_frames=24, height=96, width=96,
          max_objects=3)),
      size=256,
      intervals=(2, 5, 8),
      interval_probs=(0.4, 0.4, 0.2),
      pairs_per_epoch=69_600,
      batch_size=12,
      num_threads=8,
      prefetch=4,
  ))
  c.update(overrides)
  return c
