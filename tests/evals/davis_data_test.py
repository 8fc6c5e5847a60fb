"""Tests of the DAVIS-layout reader (2016 binary and 2017 palette masks)."""

import os

import numpy as np
import pytest
from PIL import Image

from corrjax.evals import davis_data
from corrjax.evals import visualize


def _write(root, name, masks, binary=False, resolution="480p",
           frame_shape=None, frames=None):
  """Writes frames (all, or the given indices) and masks of a sequence."""
  for sub in ("JPEGImages", "Annotations"):
    os.makedirs(os.path.join(root, sub, resolution, name), exist_ok=True)
  shape = frame_shape or masks.shape[1:]
  for t in range(masks.shape[0]) if frames is None else frames:
    Image.fromarray(np.full((*shape, 3), 40 * t, np.uint8)).save(
        os.path.join(root, "JPEGImages", resolution, name, f"{t:05d}.jpg"))
  for t, mask in enumerate(masks):
    path = os.path.join(root, "Annotations", resolution, name, f"{t:05d}.png")
    if binary:
      Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    else:
      visualize.save_label_png(path, mask)


def _masks(t=3, h=8, w=10):
  masks = np.zeros((t, h, w), np.int32)
  masks[:, 1:4, 1:4] = 1
  masks[:, 5:7, 5:9] = 2
  masks[:, 0, -1] = 255
  return masks


def test_sequence_names_prefers_2017(tmp_path):
  os.makedirs(tmp_path / "ImageSets" / "2017")
  (tmp_path / "ImageSets" / "val.txt").write_text("old\n")
  (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("a\n\nb\n")
  assert davis_data.sequence_names(str(tmp_path), "val") == ["a", "b"]
  with pytest.raises(FileNotFoundError, match="ImageSets/2017/test.txt"):
    davis_data.sequence_names(str(tmp_path), "test")


def test_palette_ids_and_void_kept(tmp_path):
  masks = _masks()
  _write(str(tmp_path), "s", masks, resolution="Full-Resolution")
  video = davis_data.read_video(str(tmp_path), "s", "Full-Resolution")
  assert video.name == "s" and video.frames.shape == (3, 8, 10, 3)
  assert video.frames.dtype == np.uint8 and video.masks.dtype == np.int32
  np.testing.assert_array_equal(video.masks, masks)  # 255 stays void.
  names, read = davis_data.read_masks(str(tmp_path), "s", "Full-Resolution")
  assert names == ["00000", "00001", "00002"]
  np.testing.assert_array_equal(read, masks)
  with pytest.raises(FileNotFoundError, match="JPEGImages/480p"):
    davis_data.read_video(str(tmp_path), "s")


def test_binary_masks_are_object_one(tmp_path):
  masks = _masks() == 1
  _write(str(tmp_path), "s", masks, binary=True)
  video = davis_data.read_video(str(tmp_path), "s")
  np.testing.assert_array_equal(video.masks, masks.astype(np.int32))
  Image.fromarray(np.full((8, 10), 7, np.uint8)).save(
      tmp_path / "Annotations" / "480p" / "s" / "00001.png")
  with pytest.raises(ValueError, match="must be binary 0/255"):
    davis_data.read_video(str(tmp_path), "s")


def test_count_mismatch_is_an_error(tmp_path):
  _write(str(tmp_path), "s", _masks(t=4), frames=[0, 1, 2, 3, 4])
  os.remove(tmp_path / "Annotations" / "480p" / "s" / "00002.png")
  with pytest.raises(ValueError, match=r"s: 5 frames but 3 annotations "
                     r"\(none for frame 00002\)"):
    davis_data.read_video(str(tmp_path), "s")


def test_annotation_without_frame_is_an_error(tmp_path):
  _write(str(tmp_path), "s", _masks(t=3), frames=[0, 1])
  with pytest.raises(ValueError, match="annotation 00002.png has no frame"):
    davis_data.read_video(str(tmp_path), "s")


def test_first_frame_only_annotation(tmp_path):
  _write(str(tmp_path), "s", _masks(t=1), frames=[0, 1, 2])
  video = davis_data.read_video(str(tmp_path), "s")
  assert video.masks.shape == (3, 8, 10)
  assert not video.masks[1:].any()


def test_mask_size_mismatch_is_an_error(tmp_path):
  _write(str(tmp_path), "s", _masks(), frame_shape=(8, 12))
  with pytest.raises(ValueError, match=r"s/00000: mask \(8, 10\) and frame "
                     r"\(8, 12\) differ in size"):
    davis_data.read_video(str(tmp_path), "s")
  visualize.save_label_png(
      str(tmp_path / "Annotations" / "480p" / "s" / "00001.png"),
      np.zeros((9, 10), np.int32))
  with pytest.raises(ValueError, match="s/00001: mask size"):
    davis_data.read_masks(str(tmp_path), "s")


def test_no_annotations(tmp_path):
  _write(str(tmp_path), "s", _masks())
  for t in range(3):
    os.remove(tmp_path / "Annotations" / "480p" / "s" / f"{t:05d}.png")
  with pytest.raises(FileNotFoundError, match="no annotations for sequence"):
    davis_data.read_video(str(tmp_path), "s")
