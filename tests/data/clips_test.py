"""Tests for corrjax.data.clips (clip sampling and CRW batches)."""

import logging
import os

import jax
import numpy as np
from PIL import Image
import pytest

from corrjax import config_defaults
from corrjax.data import clips
from corrjax.data import video_files

_S, _P, _STRIDE = 32, 16, 8  # Crop, patch, grid stride: 3 x 3 patches.
_JITTER_CONFIG = dict(crop_scale=(0.8, 0.95), crop_ratio=(0.7, 1.3),
                      patch_scale=(0.7, 0.9), patch_ratio=(3 / 4, 4 / 3))


def _config(**overrides):
  c = config_defaults.clip_data(
      source="folder", clip_len=3, frame_stride=2, clips_per_video=2,
      crop_size=_S, patch_size=_P, patch_stride=_STRIDE, num_threads=2,
      prefetch=2, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
      patch_scale=(1.0, 1.0), patch_ratio=(1.0, 1.0))
  c.update(overrides)
  return c


def _coded_frame(video, frame):
  """uint8 [S, S, 3]: red = 40 video + frame, green = 8 row, blue = 8 col."""
  y, x = np.mgrid[:_S, :_S]
  return np.stack([np.full_like(y, 40 * video + frame), 8 * y, 8 * x],
                  -1).astype(np.uint8)


def _decode(patches):
  """uint8 [..., T, N, P, P, 3] -> (video [..., T], frame [..., T])."""
  code = patches[..., :, 0, 0, 0, 0].astype(int)
  return code // 40, code % 40


def _write_folders(root, lengths):
  for v, n in enumerate(lengths):
    (root / f"vid{v}").mkdir(parents=True)
    for k in range(n):  # Unpadded names: numbers must sort as numbers.
      Image.fromarray(_coded_frame(v, k)).save(root / f"vid{v}" / f"{k}.png")


def _batches(config, steps=(0, 3), batch=4, seed=0):
  it, loader = clips.crw_batches(config, global_batch_size=batch,
                                 start_step=steps[0], total_steps=steps[1],
                                 seed=seed)
  return [b["patches"] for b in it], loader


def test_resample_frames_matches_torchvision_formula():
  np.testing.assert_array_equal(clips.resample_frames(10, 24, 8), [0, 3, 6, 9])
  # 30 -> 8 fps: floor(20 * 8 / 30) = 5 frames at floor(k * 3.75).
  np.testing.assert_array_equal(clips.resample_frames(20, 30, 8),
                                [0, 3, 7, 11, 15])
  torch = pytest.importorskip("torch")
  for n, fps in ((250, 29.97), (301, 25.0), (97, 12.5)):
    count = int(np.floor(n * (8.0 / fps)))
    expected = (torch.arange(count, dtype=torch.float32)
                * (fps / 8)).floor().to(torch.int64).numpy()
    np.testing.assert_array_equal(clips.resample_frames(n, fps, 8), expected)


def test_epoch_takes_clips_per_video_distinct_clips_of_each_video():
  sampler = clips.EpochClipSampler([10, 1, 0, 4], clips_per_video=3, seed=5)
  assert sampler.epoch_size == 3 + 1 + 0 + 3
  for epoch in (0, 1):
    picks = [sampler(e) for e in range(7 * epoch, 7 * epoch + 7)]
    assert len(set(picks)) == 7
    assert sorted(v for v, _ in picks) == [0, 0, 0, 1, 3, 3, 3]
    assert all(c < [10, 1, 0, 4][v] for v, c in picks)
  assert [sampler(e) for e in range(7)] != [sampler(e) for e in range(7, 14)]
  other = clips.EpochClipSampler([10, 1, 0, 4], clips_per_video=3, seed=5)
  assert [other(e) for e in range(20)] == [sampler(e) for e in range(20)]


def test_folder_batches_geometry_stride_and_videos(tmp_path, caplog):
  _write_folders(tmp_path, [12, 7, 5])  # vid2 too short for 3 frames 2 apart.
  with caplog.at_level(logging.WARNING):
    patches, loader = _batches(_config(root=str(tmp_path)), steps=(0, 4))
  assert "too short" in caplog.text and len(loader.bad_frames) == 1
  assert loader.sampler.epoch_size == 4  # 2 clips of vid0 and of vid1.
  batch = np.stack(patches)
  assert batch.shape == (4, 4, 3, 9, _P, _P, 3)
  video, frame = _decode(batch)
  assert np.all(video == video[..., :1]) and np.all(video < 2)  # One video.
  np.testing.assert_array_equal(np.diff(frame, axis=-1), 2)  # Stride 2.
  # VideoList: start in [0, F - T * gap] (12 - 6 = 6 or 7 - 6 = 1).
  assert np.all(frame[..., 0] <= np.where(video[..., 0] == 0, 6, 1))
  # Every step is one epoch: each video gives 2 distinct clips per step.
  for step_video, step_frame in zip(video, frame):
    assert sorted(step_video[:, 0]) == [0, 0, 1, 1]
    assert len({(v, f) for v, f in zip(step_video[:, 0], step_frame[:, 0])
                }) == 4
  # No jitter: patch n is the window at row-major grid position n.
  for b in range(4):
    for t in range(3):
      coded = _coded_frame(video[0, b, t], frame[0, b, t])
      for n in range(9):
        y, x = _STRIDE * (n // 3), _STRIDE * (n % 3)
        np.testing.assert_array_equal(batch[0, b, t, n],
                                      coded[y:y + _P, x:x + _P])


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path):
  _write_folders(tmp_path, [9, 8])
  config = _config(root=str(tmp_path), **_JITTER_CONFIG)
  full, _ = _batches(config, steps=(0, 5))
  resumed, _ = _batches(config, steps=(3, 5))
  assert len(full) == 5 and len(resumed) == 2
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a, b)
  again, _ = _batches(config, steps=(0, 2))
  np.testing.assert_array_equal(again[1], full[1])
  other_seed, _ = _batches(config, steps=(0, 1), seed=1)
  assert not np.array_equal(other_seed[0], full[0])


def test_each_host_builds_its_slice_of_the_global_batch(tmp_path,
                                                        monkeypatch):
  _write_folders(tmp_path, [9, 8])
  config = _config(root=str(tmp_path), **_JITTER_CONFIG)
  whole, _ = _batches(config, steps=(1, 3))
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  parts = []
  for host in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda h=host: h)
    parts.append(_batches(config, steps=(1, 3))[0])
  for step in range(2):
    assert parts[0][step].shape[0] == 2
    np.testing.assert_array_equal(
        np.concatenate([parts[0][step], parts[1][step]]), whole[step])
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  with pytest.raises(ValueError, match="not divisible"):
    _batches(config)


def test_unreadable_clip_is_replaced_deterministically(tmp_path, caplog):
  _write_folders(tmp_path, [8, 8, 8])
  (tmp_path / "vid1" / "3.png").write_bytes(b"not a png")
  config = _config(root=str(tmp_path))
  with caplog.at_level(logging.WARNING):
    patches, loader = _batches(config, steps=(0, 6))
  # Clips of vid1 start at 0, 1 or 2 (frames s, s + 2, s + 4): start 1
  # holds the bad frame 3 and was drawn, yet never comes out.
  assert (1, 1) in [loader.sampler(e) for e in range(24)]
  video, frame = _decode(np.stack(patches))
  vid1_starts = set(frame[..., 0][video[..., 0] == 1])
  assert vid1_starts and vid1_starts <= {0, 2}
  assert loader.bad_frames == {str(tmp_path / "vid1")}
  assert caplog.text.count("skipping unreadable clips") == 1  # Per video.
  again, _ = _batches(config, steps=(0, 6))
  np.testing.assert_array_equal(np.stack(again), np.stack(patches))


def test_empty_or_all_too_short_source_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no .jpg"):
    _batches(_config(root=str(tmp_path)))
  _write_folders(tmp_path, [3, 4])
  with pytest.raises(ValueError, match="none of the 2 videos"):
    _batches(_config(root=str(tmp_path)))
  with pytest.raises(ValueError, match="root is empty"):
    _batches(_config(root=""))
  with pytest.raises(ValueError, match="Unknown data.source"):
    _batches(_config(source="webdataset"))


def test_video_files_resampled_to_frame_rate(tmp_path, caplog):
  for v, n in enumerate([20, 14]):
    frames = np.stack([_coded_frame(v, k) for k in range(n)])
    video_files.write_video(str(tmp_path / f"v{v}.mp4"), frames, fps=30,
                            keyframe_interval=4)
  video_files.write_video(str(tmp_path / "short.mp4"),
                          np.stack([_coded_frame(3, k) for k in range(5)]))
  (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
  # 30 -> 10 fps keeps every 3rd frame; 3 consecutive kept frames per clip.
  config = _config(source="video", root=str(tmp_path), frame_rate=10.0,
                   index_cache=str(tmp_path / "index.npz"))
  with caplog.at_level(logging.WARNING):
    patches, loader = _batches(config, steps=(0, 3))
  assert sorted(os.path.basename(p) for p in loader.bad_frames) == [
      "broken.mp4", "short.mp4"]
  video, frame = _decode(np.stack(patches))
  assert set(video.ravel()) <= {0, 1}
  np.testing.assert_array_equal(np.diff(frame, axis=-1), 3)
  assert np.all(frame % 3 == 0)
  # v0 keeps 0, 3, .., 18 (7 frames), v1 0, .., 12 (5): last starts 12, 6.
  assert np.all(frame[..., 0] <= np.where(video[..., 0] == 0, 12, 6))
  stride_config = _config(source="video", root=str(tmp_path), frame_rate=0.0)
  _, frame = _decode(np.stack(_batches(stride_config, steps=(0, 1))[0]))
  np.testing.assert_array_equal(np.diff(frame, axis=-1), 2)


def test_synthetic_source_gives_crw_shapes():
  config = config_defaults.clip_data(source="synthetic", num_threads=2,
                                     crop_size=64, patch_size=32,
                                     patch_stride=16)
  config.synthetic.update(num_videos=2, num_frames=16, height=40, width=48)
  patches, loader = _batches(config, steps=(0, 1), batch=2)
  assert patches[0].shape == (2, 4, 9, 32, 32, 3) and not loader.bad_frames


def test_real_davis_frames_and_kinetics_clip(data_root):
  davis = config_defaults.clip_data(
      source="folder", root=os.path.join(data_root, "davis2016", "JPEGImages",
                                         "240p"), frame_stride=3,
      num_threads=2)
  kinetics = config_defaults.clip_data(
      source="video", root=os.path.join(data_root, "videos"), num_threads=2)
  for config in (davis, kinetics):
    patches, loader = _batches(config, steps=(0, 1), batch=2)
    assert patches[0].shape == (2, 4, 49, 64, 64, 3)
    assert patches[0].dtype == np.uint8 and not loader.bad_frames
    assert patches[0].std() > 10  # Real content, not blank frames.
