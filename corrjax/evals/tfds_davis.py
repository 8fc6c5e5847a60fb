"""DAVIS 2017 from tensorflow-datasets (`davis/480p`) as `vos.Video`s."""

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from corrjax.data import tfds_import
from corrjax.evals import vos

CONFIGS = ("480p", "full_resolution")
_SPLITS = {"val": "validation", "validation": "validation",
           "train": "train"}


def to_video(example: Mapping[str, Any]) -> vos.Video:
  """One numpy example of the tfds `davis` builder -> `vos.Video`.

  The builder's features are {'video': {'frames': uint8 [T, H, W, 3],
  'segmentations': uint8 [T, H, W, 1] palette indices (object ids, 255 =
  void as in the PNGs)}, 'metadata': {'num_frames', 'video_name'}}.

  Args:
    example: one element of `tfds.as_numpy(dataset)`.

  Returns:
    Video with uint8 frames [T, H, W, 3] and int32 masks [T, H, W].

  Raises:
    ValueError: frames and masks that differ in count or size.
  """
  meta = example["metadata"]
  name = meta["video_name"]
  name = name.decode() if isinstance(name, bytes) else str(name)
  frames = np.asarray(example["video"]["frames"], np.uint8)
  masks = np.asarray(example["video"]["segmentations"])
  if masks.ndim == 4 and masks.shape[-1] == 1:
    masks = masks[..., 0]
  if frames.ndim != 4 or frames.shape[-1] != 3 or masks.ndim != 3:
    raise ValueError(f"{name}: expected frames [T, H, W, 3] and masks "
                     f"[T, H, W(, 1)], got {frames.shape} and "
                     f"{np.shape(example['video']['segmentations'])}.")
  if frames.shape[:3] != masks.shape:
    raise ValueError(f"{name}: frames {frames.shape[:3]} and masks "
                     f"{masks.shape} differ in count or size.")
  num_frames = int(meta["num_frames"])
  if num_frames != frames.shape[0]:
    raise ValueError(f"{name}: metadata says {num_frames} frames, the "
                     f"example has {frames.shape[0]}.")
  return vos.Video(name, frames, masks.astype(np.int32))


def iterate_videos(split: str = "validation", config: str = "480p",
                   data_dir: str | None = None,
                   max_videos: int | None = None) -> Iterator[vos.Video]:
  """Yields the videos of a prepared `davis/<config>` dataset, in order.

  Args:
    split: 'validation' (alias 'val') or 'train'.
    config: '480p' or 'full_resolution'.
    data_dir: tfds data folder (may be gs://...); None for the default.
    max_videos: stop after this many videos (None: all).

  Raises:
    ValueError: unknown split or config, or a malformed example.
  """
  tfds = tfds_import.import_tfds()
  if config not in CONFIGS:
    raise ValueError(f"unknown davis config {config!r}; expected one of "
                     f"{CONFIGS}.")
  if split not in _SPLITS:
    raise ValueError(f"unknown davis split {split!r}; expected one of "
                     f"{sorted(_SPLITS)}.")
  dataset = tfds.load(f"davis/{config}", split=_SPLITS[split],
                      data_dir=data_dir, download=False, shuffle_files=False)
  if max_videos:
    dataset = dataset.take(max_videos)
  for example in tfds.as_numpy(dataset):
    yield to_video(example)


def load_videos(split: str = "validation", config: str = "480p",
                data_dir: str | None = None,
                max_videos: int | None = None) -> list[vos.Video]:
  """All videos of `iterate_videos` as a list."""
  return list(iterate_videos(split, config, data_dir, max_videos))
