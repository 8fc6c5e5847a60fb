"""Deterministic two-view crop pipeline on grain.

Why grain: the batch of step s is a pure function of (seed, s), computed from
a random-access frame source by index, so a resumed run needs no iterator
state (the step in the checkpoint says where to go on) and reads exactly the
batches of an uninterrupted run. grain gives that model (map over an index
range) with thread-parallel decoding and prefetching and no TensorFlow graph;
its PIL-based crops are those of the reference's torchvision transforms.

Example e (the global index of `data/sampler.py`, (train step - 1) *
global_batch + position) draws its frame and both crops from
np.random.Generator(PCG64(SeedSequence([seed, e]))).
"""

import ml_collections
import numpy as np

from corrjax.data import augment
from corrjax.data import frames as frames_lib
from corrjax.data import sampler
from corrjax.data import synthetic

_MAX_BAD_FRAMES_PER_EXAMPLE = 100


class TwoViewCrops:
  """Callable: global example index -> two crops of one frame + boxes."""

  def __init__(self, frames, *, seed: int, size: int,
               scale: tuple[float, float], ratio: tuple[float, float]):
    self._frames = frames
    self._seed = seed
    self._size = size
    self._scale = tuple(scale)
    self._ratio = tuple(ratio)
    self._bad = sampler.BadItems()

  @property
  def bad_frames(self) -> set[int]:
    """Indices of the unreadable frames skipped so far."""
    return self._bad.keys()

  def _load(self, rng: np.random.Generator) -> np.ndarray:
    """A frame chosen by `rng`; unreadable ones are skipped with a warning."""
    for _ in range(_MAX_BAD_FRAMES_PER_EXAMPLE):
      index = int(rng.integers(len(self._frames)))
      try:
        frame = self._frames.load(index)
      except sampler.UNREADABLE_ERRORS as e:
        self._bad.record(index, "skipping unreadable frame %s (%s); %d "
                         "skipped so far", self._frames.describe(index), e)
        continue
      if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ValueError(f"frame {self._frames.describe(index)} is smaller "
                         "than 2x2 pixels.")
      return frame
    raise OSError(f"{_MAX_BAD_FRAMES_PER_EXAMPLE} unreadable frames in a row "
                  f"({len(self._bad)} of {len(self._frames)} known bad)"
                  "; is the data folder corrupt?")

  def __call__(self, example: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self._seed, int(example)])
    frame = self._load(rng)
    view1, box1 = augment.random_resized_crop(
        rng, frame, self._size, self._scale, self._ratio)
    view2, box2 = augment.random_resized_crop(
        rng, frame, self._size, self._scale, self._ratio)
    return {"view1": view1, "view2": view2, "box1": box1, "box2": box2}


def two_view_batches(frames, config: ml_collections.ConfigDict, *,
                     global_batch_size: int, start_step: int,
                     total_steps: int, seed: int):
  """This host's batches of train steps start_step + 1 .. total_steps.

  Args:
    frames: a source with `__len__`, `load(i)` and `describe(i)`.
    config: `data` config (crop_size, crop_scale, crop_ratio, num_threads,
      prefetch).
    global_batch_size: examples per step over all hosts.
    start_step: train steps already done (0, or the restored step when
      resuming); see `sampler.host_batches`.
    total_steps: the last train step.
    seed: data seed.

  Returns:
    (iterator of dicts of uint8/float32 numpy arrays with leading dim
    global_batch_size / process_count, the TwoViewCrops for its counters).
  """
  crops = TwoViewCrops(frames, seed=seed, size=config.crop_size,
                       scale=config.crop_scale, ratio=config.crop_ratio)
  batches = sampler.host_batches(
      crops, global_batch_size=global_batch_size, start_step=start_step,
      total_steps=total_steps, num_threads=config.num_threads,
      prefetch=config.prefetch)
  return batches, crops


def training_frames(data: ml_collections.ConfigDict):
  """The frame source named by a data config (`config.data`)."""
  if data.source == "synthetic":
    s = data.synthetic
    videos = synthetic.make_videos(
        s.seed, num_videos=s.num_videos, num_frames=s.num_frames,
        height=s.height, width=s.width, max_objects=s.max_objects)
    return frames_lib.ArrayFrames(np.concatenate([v.frames for v in videos]))
  if data.source == "folder":
    if not data.root:
      raise ValueError("config.data.root is empty: point it at a folder of "
                       "frames, e.g. --config.data.root=/data/JPEGImages.")
    return frames_lib.ImageFolderFrames(data.root, data.pattern)
  raise ValueError(f"Unknown data.source {data.source!r}; expected "
                   "'synthetic' or 'folder'.")
