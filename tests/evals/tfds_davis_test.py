"""Tests of reading tensorflow-datasets' `davis` into `vos.Video`s."""

import numpy as np
import pytest

from corrjax.evals import tfds_davis

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

_SIZES = ((5, 6, 7), (3, 4, 9))  # (T, H, W) per video.


def _mask(t, h, w, seed):
  ids = np.random.default_rng(seed).integers(0, 3, (t, h, w, 1))
  ids[:, 0, 0] = 255  # Void stays 255.
  return ids.astype(np.uint8)


def _as_dataset(self, *args, **kwargs):
  """Mock davis examples whose frames and masks agree (random ones don't)."""
  del args, kwargs
  def gen():
    for i, (t, h, w) in enumerate(_SIZES):
      frames = np.full((t, h, w, 3), 10 * i, np.uint8)
      yield {"video": {"frames": frames, "segmentations": _mask(t, h, w, i)},
             "metadata": {"num_frames": t, "video_name": f"vid{i}"}}
  return tf.data.Dataset.from_generator(
      gen, output_types=self.info.features.dtype,
      output_shapes=self.info.features.shape)


def test_load_videos_from_mock_data():
  with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
    videos = tfds_davis.load_videos("val", "480p", data_dir="gs://x/tfds")
  assert [v.name for v in videos] == ["vid0", "vid1"]
  for i, (video, (t, h, w)) in enumerate(zip(videos, _SIZES)):
    assert video.frames.shape == (t, h, w, 3)
    assert video.frames.dtype == np.uint8
    assert video.masks.dtype == np.int32
    np.testing.assert_array_equal(video.masks, _mask(t, h, w, i)[..., 0])
    assert video.frames[0, 0, 0, 0] == 10 * i


def test_max_videos_and_iterate():
  with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
    videos = list(tfds_davis.iterate_videos("validation", max_videos=1))
  assert [v.name for v in videos] == ["vid0"]


def test_random_mock_examples_are_rejected_clearly():
  # tfds' random mock data draws frames and masks of unrelated sizes.
  with tfds.testing.mock_data(num_examples=1):
    with pytest.raises(ValueError, match="differ in count or size"):
      tfds_davis.load_videos("train", "full_resolution")


def test_bad_arguments():
  with pytest.raises(ValueError, match="unknown davis config"):
    tfds_davis.load_videos(config="1080p")
  with pytest.raises(ValueError, match="unknown davis split"):
    tfds_davis.load_videos(split="test")


def test_to_video_checks_num_frames():
  example = {"video": {"frames": np.zeros((2, 3, 4, 3), np.uint8),
                       "segmentations": np.zeros((2, 3, 4, 1), np.uint8)},
             "metadata": {"num_frames": 3, "video_name": b"x"}}
  with pytest.raises(ValueError, match="metadata says 3 frames"):
    tfds_davis.to_video(example)
