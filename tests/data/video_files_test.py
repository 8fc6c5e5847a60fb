"""Tests for corrjax.data.video_files (PyAV indexing, seeking, cache)."""

import os

import av
import numpy as np
import pytest

from corrjax.data import video_files


def _frames(num_frames, height=16, width=24, seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def test_written_mp4_is_indexed_and_decodes_to_its_frames(tmp_path):
  frames = _frames(30)
  path = str(tmp_path / "clip.mp4")
  video_files.write_video(path, frames, fps=30, keyframe_interval=8)
  index = video_files.index_video(path)
  assert not index.error and index.fps == 30.0 and len(index.pts) == 30
  assert np.all(np.diff(index.pts) > 0)
  # Seeks backwards to a keyframe (0, 8, 16, 24) and decodes forwards;
  # repeats and any order are allowed.
  for wanted in ([0], [29], [9, 10, 11, 12], [23, 5, 23, 17]):
    np.testing.assert_array_equal(
        video_files.read_frames(path, index.pts, wanted), frames[wanted])


def test_missing_frame_and_corrupt_file_raise_or_report(tmp_path):
  path = str(tmp_path / "clip.mp4")
  video_files.write_video(path, _frames(6))
  index = video_files.index_video(path)
  with pytest.raises(OSError, match="not decoded"):
    video_files.read_frames(path, index.pts + 1, [2])
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"\x00not a video" * 50)
  bad_index = video_files.index_video(str(bad))
  assert bad_index.error and not len(bad_index.pts)
  with pytest.raises(OSError, match="cannot decode"):
    video_files.read_frames(str(bad), index.pts, [0])


def test_video_files_lists_sorted_and_caches_the_index(tmp_path, monkeypatch):
  root = tmp_path / "videos"
  (root / "b").mkdir(parents=True)
  (root / "a").mkdir()
  video_files.write_video(str(root / "b" / "x.mp4"), _frames(5))
  video_files.write_video(str(root / "a" / "y.mp4"), _frames(7))
  (root / "a" / "z.mp4").write_bytes(b"junk")
  (root / "a" / "notes.txt").write_text("not a video")
  cache = str(tmp_path / "cache" / "index.npz")
  videos = video_files.VideoFiles(str(root), cache_path=cache, num_threads=2)
  assert [os.path.relpath(p, root) for p in videos.paths] == [
      "a/y.mp4", "a/z.mp4", "b/x.mp4"]
  assert [videos.num_frames(v) for v in range(3)] == [7, 0, 5]
  assert list(videos.errors) == [1] and os.path.exists(cache)
  np.testing.assert_array_equal(videos.load(2, [4, 0]), _frames(5)[[4, 0]])

  # A second listing reads the cache, except for a file that changed.
  indexed = []
  real_index_video = video_files.index_video

  def counting_index_video(path):
    indexed.append(os.path.basename(path))
    return real_index_video(path)

  monkeypatch.setattr(video_files, "index_video", counting_index_video)
  again = video_files.VideoFiles(str(root), cache_path=cache)
  assert not indexed and list(again.errors) == [1]
  assert [again.num_frames(v) for v in range(3)] == [7, 0, 5]
  video_files.write_video(str(root / "b" / "x.mp4"), _frames(9, seed=1))
  changed = video_files.VideoFiles(str(root), cache_path=cache)
  assert indexed == ["x.mp4"] and changed.num_frames(2) == 9
  np.testing.assert_array_equal(changed.load(2, [8]), _frames(9, seed=1)[[8]])


def test_empty_folder_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no video files"):
    video_files.VideoFiles(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    video_files.VideoFiles(str(tmp_path / "missing"))


def test_kinetics_clip_seeks_to_the_frames_of_a_full_decode(data_root):
  path = os.path.join(data_root, "videos", "kinetics400_demo.mp4")
  index = video_files.index_video(path)
  assert not index.error and len(index.pts) == 280 and index.fps > 0
  with av.open(path) as container:
    decoded = {f.pts: f.to_ndarray(format="rgb24")
               for f in container.decode(video=0)}
  wanted = [0, 1, 2, 97, 150, 151, 279]  # Starts of GOPs, B-frames, the end.
  got = video_files.read_frames(path, index.pts, wanted)
  assert got.shape == (len(wanted), 256, 340, 3)
  for frame, k in zip(got, wanted):
    np.testing.assert_array_equal(frame, decoded[index.pts[k]])
