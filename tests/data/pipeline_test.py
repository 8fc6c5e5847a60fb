"""Tests for corrjax.data.{augment, frames, pipeline}."""

import logging
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest

from corrjax.data import augment
from corrjax.data import frames as frames_lib
from corrjax.data import pipeline


def _data_config(**kw):
  c = dict(crop_size=16, crop_scale=(0.0, 1.0), crop_ratio=(3 / 4, 4 / 3),
           num_threads=2, prefetch=2)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def _frames(n=5, h=24, w=32):
  rng = np.random.default_rng(0)
  return frames_lib.ArrayFrames(
      rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))


def test_crop_params_are_valid_and_cover_the_range():
  rng = np.random.default_rng(0)
  areas = []
  for _ in range(500):
    i, j, h, w = augment.random_resized_crop_params(
        rng, 40, 60, (0.0, 1.0), (3 / 4, 4 / 3))
    assert 0 < h and 0 < w and 0 <= i <= 40 - h and 0 <= j <= 60 - w
    areas.append(h * w / 2400)
  assert min(areas) < 0.05 and max(areas) > 0.8  # Max 53x40 at 4/3.


def test_crop_params_fall_back_to_a_central_crop():
  rng = np.random.default_rng(0)
  # No crop of ratio in [3, 4] and area <= 1% fits a 10x10 frame (w >= 1):
  # the 10 tries fail and the fallback clips to max ratio... or whole frame.
  i, j, h, w = augment.random_resized_crop_params(rng, 10, 100, (0.9, 1.0),
                                                  (1.0, 1.0))
  assert (i, j, h, w) == (0, 45, 10, 10)


def test_box_convention_and_pixels():
  frame = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)
  rng = np.random.default_rng(2)
  crop, box = augment.random_resized_crop(rng, frame, 8, (0.2, 0.5),
                                          (0.8, 1.2))
  i, j, h, w = augment.random_resized_crop_params(
      np.random.default_rng(2), 20, 30, (0.2, 0.5), (0.8, 1.2))
  np.testing.assert_allclose(
      box, [j / 29, i / 19, (j + w - 1) / 29, (i + h - 1) / 19], rtol=1e-6)
  # torchvision's PIL path: crop, then bilinear resize.
  expected = Image.fromarray(frame).crop((j, i, j + w, i + h)).resize(
      (8, 8), Image.BILINEAR)
  np.testing.assert_array_equal(crop, np.asarray(expected))


def test_batches_are_a_pure_function_of_seed_and_step():
  config, src = _data_config(), _frames()
  it, _ = pipeline.two_view_batches(src, config, global_batch_size=4,
                                    start_step=0, total_steps=5, seed=3)
  full = list(it)
  assert len(full) == 5
  assert full[0]["view1"].shape == (4, 16, 16, 3)
  assert full[0]["box1"].shape == (4, 4) and full[0]["box1"].dtype == np.float32
  resumed, _ = pipeline.two_view_batches(src, config, global_batch_size=4,
                                         start_step=3, total_steps=5, seed=3)
  for a, b in zip(full[3:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  other, _ = pipeline.two_view_batches(src, config, global_batch_size=4,
                                       start_step=0, total_steps=1, seed=4)
  assert not np.array_equal(next(other)["view1"], full[0]["view1"])
  # The two views of one example are different crops of the same frame.
  assert not np.array_equal(full[0]["box1"], full[0]["box2"])


def _write_jpegs(folder, n, size=(24, 32)):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(
        os.path.join(folder, f"{i:05d}.jpg"))


def test_image_folder_reads_nested_trees_and_patterns(tmp_path):
  _write_jpegs(tmp_path / "JPEGImages" / "480p" / "a", 3)
  _write_jpegs(tmp_path / "JPEGImages" / "240p" / "b", 2)
  assert len(frames_lib.ImageFolderFrames(str(tmp_path))) == 5
  src = frames_lib.ImageFolderFrames(str(tmp_path), "JPEGImages/240p/*/*.jpg")
  assert len(src) == 2 and src.load(0).shape == (24, 32, 3)


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    frames_lib.ImageFolderFrames(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="no .jpg"):
    frames_lib.ImageFolderFrames(str(tmp_path))


def test_unreadable_jpegs_are_skipped_and_counted(tmp_path, caplog):
  _write_jpegs(tmp_path / "v", 4)
  (tmp_path / "v" / "00001.jpg").write_bytes(b"not a jpeg")
  (tmp_path / "v" / "00002.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  src = frames_lib.ImageFolderFrames(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    it, crops = pipeline.two_view_batches(src, _data_config(),
                                          global_batch_size=8, start_step=0,
                                          total_steps=4, seed=0)
    batches = list(it)
  assert len(batches) == 4
  assert crops.bad_frames == {1, 2}
  assert sum("skipping unreadable frame" in r.message
             for r in caplog.records) == 2


def test_all_frames_unreadable_is_an_error(tmp_path):
  os.makedirs(tmp_path / "v")
  for i in range(3):
    (tmp_path / "v" / f"{i}.jpg").write_bytes(b"junk")
  src = frames_lib.ImageFolderFrames(str(tmp_path))
  with pytest.raises(OSError, match="unreadable frames in a row"):
    pipeline.TwoViewCrops(src, seed=0, size=8, scale=(0.1, 1),
                          ratio=(1, 1))(0)


def test_real_davis_train_frames(data_root):
  root = data_root
  src = frames_lib.ImageFolderFrames(os.path.join(root, "davis2016"),
                                     "JPEGImages/240p/*/*.jpg")
  assert len(src) == 2079
  batch = next(pipeline.two_view_batches(
      src, _data_config(crop_size=32), global_batch_size=4, start_step=0,
      total_steps=1, seed=0)[0])
  assert batch["view1"].shape == (4, 32, 32, 3)
  assert 0 <= batch["box1"].min() and batch["box1"].max() <= 1
