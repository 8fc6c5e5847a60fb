"""Tests for corrjax.data.synthetic."""

import functools

import numpy as np
import pytest

from corrjax.data import synthetic

_T, _H, _W = 10, 64, 80


@functools.lru_cache(maxsize=None)
def _batch():
  return synthetic.make_videos(3, num_videos=8, num_frames=_T, height=_H,
                               width=_W, max_objects=3, num_keypoints=6)


def _fields(video):
  return (video.frames, video.masks, video.keypoints, video.visible)


def test_deterministic():
  kwargs = dict(num_frames=5, height=32, width=40, num_objects=2)
  a = synthetic.make_video(11, **kwargs)
  b = synthetic.make_video(11, **kwargs)
  for x, y in zip(_fields(a), _fields(b)):
    assert x.tobytes() == y.tobytes()
  c = synthetic.make_video(12, **kwargs)
  assert not np.array_equal(a.frames, c.frames)


def test_make_videos_deterministic_and_prefix_stable():
  kwargs = dict(num_frames=4, height=24, width=24, max_objects=2)
  a = synthetic.make_videos(5, num_videos=3, **kwargs)
  b = synthetic.make_videos(5, num_videos=2, name_offset=7, **kwargs)
  assert [v.name for v in a] == ["synth_00000", "synth_00001", "synth_00002"]
  assert [v.name for v in b] == ["synth_00007", "synth_00008"]
  for va, vb in zip(a, b):
    for x, y in zip(_fields(va), _fields(vb)):
      assert x.tobytes() == y.tobytes()
  assert not np.array_equal(a[0].frames, a[1].frames)
  other = synthetic.make_videos(6, num_videos=1, **kwargs)[0]
  assert not np.array_equal(a[0].frames, other.frames)


def test_shapes_and_dtypes():
  video = synthetic.make_video(7, num_frames=_T, height=_H, width=_W,
                               num_objects=3, num_keypoints=5)
  assert video.name == "synth_00007"
  assert video.frames.shape == (_T, _H, _W, 3)
  assert video.frames.dtype == np.uint8
  assert video.masks.shape == (_T, _H, _W)
  assert video.masks.dtype == np.uint8
  assert video.keypoints.shape == (_T, 3, 5, 2)
  assert video.keypoints.dtype == np.float32
  assert video.visible.shape == (_T, 3, 5)
  assert video.visible.dtype == bool


def test_masks_ids_and_objects_visible_at_start():
  for video in _batch():
    k = video.keypoints.shape[1]
    assert 1 <= k <= 3
    assert video.masks.max() <= k
    areas = np.bincount(video.masks[0].ravel(), minlength=k + 1)
    assert np.all(areas[1:] >= 0.005 * _H * _W), areas
    assert areas[0] > 0.3 * _H * _W  # Background remains visible.


def test_objects_move():
  shifts = []
  for video in _batch():
    for k in range(1, video.keypoints.shape[1] + 1):
      first, last = video.masks[0] == k, video.masks[-1] == k
      if first.sum() < 20 or last.sum() < 20:
        continue
      c0 = np.argwhere(first).mean(axis=0)
      c1 = np.argwhere(last).mean(axis=0)
      shifts.append(np.hypot(*(c1 - c0)))
  assert len(shifts) >= 8
  assert np.median(shifts) > 3.0, shifts
  assert np.mean(np.array(shifts) > 0.5) > 0.9, shifts


def _best_shift(a, b, valid, radius=6):
  """Integer (dy, dx) minimising the SSD of b[y + dy, x + dx] vs a[y, x]."""
  best, best_err = None, np.inf
  r = radius
  core = (slice(r, -r), slice(r, -r))
  for dy in range(-r, r + 1):
    for dx in range(-r, r + 1):
      shifted = np.roll(b, (-dy, -dx), axis=(0, 1))[core]
      ok = np.roll(valid, (-dy, -dx), axis=(0, 1))[core] & valid[core]
      err = np.mean((shifted[ok] - a[core][ok])**2)
      if err < best_err:
        best, best_err = (dy, dx), err
  return best


def test_background_pans():
  moved = 0
  for video in _batch()[:4]:
    grey = video.frames.astype(np.float32).mean(axis=-1)
    valid = (video.masks[0] == 0) & (video.masks[-1] == 0)
    moved += _best_shift(grey[0], grey[-1], valid) != (0, 0)
  assert moved >= 3


def _rounded(points):
  return np.floor(points + 0.5).astype(np.int64)


def test_visible_keypoints_lie_on_their_object():
  total = 0
  for video in _batch():
    t, k, p = np.nonzero(video.visible)
    col, row = _rounded(video.keypoints[t, k, p]).T
    assert np.all((col >= 0) & (col < _W) & (row >= 0) & (row < _H))
    np.testing.assert_array_equal(video.masks[t, row, col], k + 1)
    total += t.size
  assert total > 0.5 * sum(v.visible.size for v in _batch())


def test_occlusion_happens():
  occluded = 0
  for video in _batch():
    col, row = np.moveaxis(_rounded(video.keypoints), -1, 0)
    inside = (col >= 0) & (col < _W) & (row >= 0) & (row < _H)
    frame = np.arange(_T)[:, None, None]
    values = video.masks[frame, np.clip(row, 0, _H - 1),
                         np.clip(col, 0, _W - 1)]
    ids = np.arange(1, video.keypoints.shape[1] + 1)[None, :, None]
    hidden = inside & ~video.visible
    # Hidden in-frame keypoints are covered by a nearer object.
    occluded += np.sum(hidden & (values > ids))
  assert occluded > 0


def test_texture_moves_with_keypoints():
  rng = np.random.default_rng(0)
  r = 3
  wins = trials = 0
  for video in _batch():
    grey = video.frames.astype(np.float32).mean(axis=-1)
    both = video.visible[:-1] & video.visible[1:]
    for t, k, p in zip(*np.nonzero(both)):
      x0, y0 = _rounded(video.keypoints[t, k, p])
      x1, y1 = _rounded(video.keypoints[t + 1, k, p])
      dx, dy = rng.integers(3, 7, size=2) * rng.choice([-1, 1], size=2)
      coords = np.array([x0, y0, x1, y1, x1 + dx, y1 + dy])
      if coords.min() < r or np.any(coords[0::2] >= _W - r) or np.any(
          coords[1::2] >= _H - r):
        continue
      patch = lambda g, x, y: g[y - r:y + r + 1, x - r:x + r + 1]
      ref = patch(grey[t], x0, y0)
      true_err = np.sum((patch(grey[t + 1], x1, y1) - ref)**2)
      rand_err = np.sum((patch(grey[t + 1], x1 + dx, y1 + dy) - ref)**2)
      wins += true_err < rand_err
      trials += 1
  assert trials >= 50
  assert wins / trials > 0.8, (wins, trials)


@pytest.mark.parametrize("kwargs", [
    dict(num_frames=0),
    dict(height=0),
    dict(width=-3),
    dict(num_objects=0),
    dict(num_objects=256),
    dict(num_keypoints=0),
    dict(seed=-1),
    dict(height=2.5),
    dict(num_frames=True),
])
def test_make_video_validates(kwargs):
  args = dict(seed=0, num_frames=3, height=16, width=16, num_objects=1)
  args.update(kwargs)
  seed = args.pop("seed")
  with pytest.raises(ValueError):
    synthetic.make_video(seed, **args)


@pytest.mark.parametrize("kwargs", [
    dict(num_videos=0),
    dict(max_objects=0),
    dict(name_offset=-1),
    dict(height=0),
])
def test_make_videos_validates(kwargs):
  args = dict(num_videos=2, num_frames=3, height=16, width=16)
  args.update(kwargs)
  with pytest.raises(ValueError):
    synthetic.make_videos(0, **args)


def test_tiny_and_single_frame():
  video = synthetic.make_video(1, num_frames=1, height=5, width=7,
                               num_objects=2, num_keypoints=1)
  assert video.frames.shape == (1, 5, 7, 3)
  assert video.keypoints.shape == (1, 2, 1, 2)
