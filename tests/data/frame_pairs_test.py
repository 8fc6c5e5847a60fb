"""Tests for corrjax.data.frame_pairs (LIIR's frame pairs)."""

import os

import numpy as np
import pytest
from PIL import Image

from corrjax.data import clips
from corrjax.data import frame_pairs


def test_lab_frame_matches_the_reference_cv2_pipeline():
  cv2 = pytest.importorskip("cv2")
  rng = np.random.default_rng(0)
  for shape in ((48, 85, 3), (20, 12, 3)):
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    # YTVOSTrainLoader.py:15-48 (cv2.imread gives BGR).
    image = np.float32(frame[..., ::-1]) / 255.0
    image = cv2.resize(image, (32, 32))
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2Lab)
    want = (lab - [50, 0, 0]) / np.array([50, 127, 127])
    got = frame_pairs.lab_frame(frame, 32)
    assert got.shape == (32, 32, 3) and got.dtype == np.float32
    # OpenCV interpolates a Lab lookup table on floats: < 0.5 Lab units.
    np.testing.assert_allclose(got, want, atol=0.5 / 50)


def test_resize_and_lab_separately_match_cv2():
  cv2 = pytest.importorskip("cv2")
  rng = np.random.default_rng(1)
  image = rng.uniform(size=(30, 50, 3)).astype(np.float32)
  np.testing.assert_allclose(frame_pairs.resize_linear(image, (17, 64)),
                             cv2.resize(image, (64, 17)), atol=1e-5)
  np.testing.assert_allclose(frame_pairs.rgb_to_lab(image),
                             cv2.cvtColor(image, cv2.COLOR_RGB2Lab),
                             atol=0.5)


def test_colour_dropout():
  rng = np.random.default_rng(2)
  ref, tgt = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
  out = frame_pairs.colour_dropout(ref, tgt, 2)
  np.testing.assert_array_equal(out["reference_label"], ref[..., 2:])
  np.testing.assert_array_equal(out["target_label"], tgt[..., 2:])
  np.testing.assert_array_equal(out["target"][..., 2], 0)
  np.testing.assert_allclose(out["target"][..., :2], 1.5 * tgt[..., :2])
  np.testing.assert_allclose(out["reference"][..., :2], 1.5 * ref[..., :2])
  with pytest.raises(ValueError, match="dropped channel"):
    frame_pairs.colour_dropout(ref, tgt, 0)


def test_pairs_are_disjoint_consecutive_frames_at_the_drawn_interval():
  frames = np.array([40, 3, 17, 60, 9])
  sampler = frame_pairs.PairSampler(frames, pairs_per_epoch=0, seed=3)
  size = sampler.epoch_size(0)
  pairs = [sampler(e) for e in range(size)]
  by_video = {}
  for video, ref, tgt in pairs:
    interval = tgt - ref
    assert interval in (2, 5, 8) and tgt < frames[video]
    assert ref % (2 * interval) == 0
    by_video.setdefault(video, set()).add((ref, interval))
  for video, found in by_video.items():
    (interval,) = {i for _, i in found}  # One interval per video per epoch.
    n = len(range(0, frames[video], interval)) // 2
    assert found == {(2 * interval * k, interval) for k in range(n)}
  assert size == sum(len(v) for v in by_video.values())
  # Epoch 1 follows on, with its own intervals.
  assert sampler.locate(size) == (1, 0)
  same = frame_pairs.PairSampler(frames, pairs_per_epoch=0, seed=3)
  assert [same(e) for e in range(size + 7)] == [
      sampler(e) for e in range(size + 7)]


def test_epoch_cap_and_interval_frequencies():
  frames = np.full(2000, 30)
  sampler = frame_pairs.PairSampler(frames, pairs_per_epoch=500, seed=4)
  assert sampler.epoch_size(0) == 500
  assert sampler.locate(1234) == (2, 234)
  intervals = sampler._intervals_of(0)  # pylint: disable=protected-access
  freq = [np.mean(intervals == i) for i in (2, 5, 8)]
  np.testing.assert_allclose(freq, [0.4, 0.4, 0.2], atol=0.04)
  with pytest.raises(ValueError, match="long enough"):
    frame_pairs.PairSampler([3, 4])


def _synthetic_config(**overrides):
  return frame_pairs.pair_data(
      source="synthetic", size=32, batch_size=4, num_threads=1, prefetch=1,
      synthetic=dict(seed=1, num_videos=3, num_frames=12, height=40,
                     width=48, max_objects=2), **overrides)


def test_batches_are_a_function_of_seed_and_step():
  data = _synthetic_config()
  batches, loader = frame_pairs.pair_batches(
      data, global_batch_size=4, start_step=0, total_steps=3, seed=5)
  batches = list(batches)
  assert len(batches) == 3 and not loader.bad_frames
  b = batches[1]
  assert b["reference"].shape == b["target"].shape == (4, 32, 32, 3)
  assert b["target_label"].shape == (4, 32, 32, 1)
  assert b["video_id"].dtype == np.int32
  # One dropped channel per step: zero in every input of the batch.
  dropped = [c for c in (1, 2) if not np.any(b["target"][..., c])]
  assert len(dropped) == 1 and not np.any(b["reference"][..., dropped[0]])
  resumed, _ = frame_pairs.pair_batches(
      data, global_batch_size=4, start_step=1, total_steps=3, seed=5)
  for key, value in next(resumed).items():
    np.testing.assert_array_equal(value, b[key])


def test_unreadable_frames_are_skipped_and_counted(tmp_path):
  rng = np.random.default_rng(6)
  for video in ("a", "b"):
    os.makedirs(tmp_path / video)
    for k in range(10):
      Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
          tmp_path / video / f"{k:05d}.jpg")
  (tmp_path / "b" / "00000.jpg").write_bytes(b"not a jpeg")
  loader = frame_pairs.PairLoader(clips.FolderVideos(str(tmp_path)),
                                  global_batch_size=2, size=8,
                                  pairs_per_epoch=0, seed=7)
  examples = [loader(e) for e in range(loader.sampler.epoch_size(0))]
  assert all(x["reference"].shape == (8, 8, 3) for x in examples)
  assert loader.bad_frames == {str(tmp_path / "b")}


def test_davis_train_frames(data_root):
  data = frame_pairs.pair_data(
      source="folder", root=os.path.join(data_root, "davis2016"),
      pattern="JPEGImages/240p/*/*.jpg", size=64, batch_size=2,
      num_threads=1, prefetch=1)
  batches, loader = frame_pairs.pair_batches(
      data, global_batch_size=2, start_step=0, total_steps=1, seed=0)
  batch = next(batches)
  assert not loader.bad_frames
  assert batch["target"].shape == (2, 64, 64, 3)
  lightness = batch["target"][..., 0] / 1.5
  assert -1 <= lightness.min() < lightness.max() <= 1
  assert np.abs(batch["target_label"]).max() < 1
