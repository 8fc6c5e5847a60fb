"""Mask-VOS examples: determinism, frame choice, masks cropped with frames."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from corrjax import config_defaults
from corrjax.data import clips
from corrjax.data import mask_vos_clips
from corrjax.data import pseudo_masks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _config():
  return config_defaults.load(os.path.join(REPO, "configs/mask_vos.py:smoke"))


def test_batch_of_a_step_depends_only_on_seed_and_step():
  config = _config()
  config.total_steps = 4
  fresh, _ = mask_vos_clips.batches(config, start_step=0)
  fresh = list(fresh)
  assert len(fresh) == 4
  resumed, _ = mask_vos_clips.batches(config, start_step=2)
  for a, b in zip(fresh[2:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  b, s = config.data.batch_size, config.data.crop_size
  n = config.data.num_refs + 1
  assert fresh[0]["seg_frames"].shape == (b, n, s, s, 3)
  assert fresh[0]["seg_masks"].shape == (b, n, s, s)
  assert fresh[0]["short_frames"].shape == (b, 2, s, s, 3)
  assert fresh[0]["long_frames"].shape == (b, 2, s, s, 3)
  # No pseudo masks yet (phase 1): background, no valid object.
  assert not fresh[0]["seg_masks"].any()
  assert not fresh[0]["object_valid"].any()
  assert any(np.any(x["seg_frames"] != fresh[0]["seg_frames"])
             for x in fresh[1:])


def test_frame_choice():
  rng = np.random.default_rng(0)
  for _ in range(200):
    idx = mask_vos_clips.choose_frames(rng, 7, 2, 5)
    seg = idx["seg"]
    assert len(set(seg)) == 3 and np.all(np.diff(seg) > 0) and seg[-1] < 7
    assert idx["short"][1] == idx["short"][0] + 1 and idx["short"][1] < 7
    assert idx["long"][1] - idx["long"][0] >= 5 and idx["long"][1] < 7


def _block_video(rng, t=6, size=48, objects=3):
  """Frames whose grey level is 60 x the object id of 12 px blocks."""
  ids = rng.integers(0, objects + 1, (t, size // 12, size // 12))
  ids = np.repeat(np.repeat(ids, 12, axis=1), 12, axis=2)
  frames = np.repeat((ids * 60).astype(np.uint8)[..., None], 3, axis=-1)
  return frames, ids


def _data(masks_dir):
  return ml_collections.ConfigDict(dict(
      num_refs=2, num_objects=3, long_gap=3, crop_size=32,
      crop_scale=(0.5, 1.0), masks_dir=masks_dir))


def test_pseudo_masks_share_the_frames_crop_and_flip(tmp_path):
  rng = np.random.default_rng(0)
  frames, ids = zip(*[_block_video(rng) for _ in range(2)])
  source = clips.ArrayVideos(list(frames), ["a", "b"])
  for name, m in zip(["a", "b"], ids):
    pseudo_masks.write_pseudo_masks(str(tmp_path), name, m)
  examples = mask_vos_clips.Examples(_data(str(tmp_path)), seed=3,
                                     source=source)
  for e in range(8):
    ex = examples(e)
    masks, grey = ex["seg_masks"], ex["seg_frames"][..., 0].astype(int)
    assert masks.dtype == np.int32 and masks.max() <= 3
    # Away from block edges (3x3 constant mask), grey = 60 x id.
    pad = np.pad(masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
    flat = np.all([pad[:, 1 + dy:33 + dy, 1 + dx:33 + dx] == masks
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    assert flat.mean() > 0.3
    np.testing.assert_allclose(grey[flat], 60 * masks[flat], atol=2)
    np.testing.assert_array_equal(ex["object_valid"],
                                  np.isin([1, 2, 3], masks))


def test_folder_videos_read_masks_by_folder_name(tmp_path):
  rng = np.random.default_rng(1)
  frames, ids = _block_video(rng)
  for t, f in enumerate(frames):
    path = tmp_path / "frames" / "bear" / f"{t:05d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(f).save(path, quality=100)
  pseudo_masks.write_pseudo_masks(str(tmp_path / "masks"), "bear", ids)
  source = clips.FolderVideos(str(tmp_path / "frames"), "*/*.jpg")
  assert mask_vos_clips.video_name(source, 0) == "bear"
  ex = mask_vos_clips.Examples(_data(str(tmp_path / "masks")), seed=0,
                               source=source)(0)
  assert ex["seg_masks"].any()
  pseudo_masks.write_pseudo_masks(str(tmp_path / "small"), "bear",
                                  ids[:, :24, :24])
  with pytest.raises(ValueError, match="pseudo masks of 'bear'"):
    mask_vos_clips.Examples(_data(str(tmp_path / "small")), seed=0,
                            source=source)(0)


def test_too_short_videos_are_a_clear_error():
  source = clips.ArrayVideos([np.zeros((3, 8, 8, 3), np.uint8)], ["x"])
  with pytest.raises(ValueError, match="frames one example needs"):
    mask_vos_clips.Examples(_data(""), seed=0, source=source)
