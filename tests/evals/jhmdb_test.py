"""JHMDB split lists, label maps and pose decoding vs videowalk's code.

Fixtures `testdata/jhmdb_*_ref.npz` were made by a throwaway script (not in
the repo) that pulled `draw_labelmap_np` (videowalk code/data/jhmdb.py:287)
and `process_pose` (code/utils/test_utils.py:55) out of a checkout of
github.com/ajabri/videowalk with `ast` and ran them, unchanged, on random
and edge-case inputs; `process_pose` ran on a small numpy stand-in for the
five torch calls it makes (torch is not installed), with random inputs so
that top-k ties do not arise.
"""

import os

import numpy as np
import pytest
import scipy.io

from corrjax.evals import jhmdb

DATA = os.path.join(os.path.dirname(__file__), "testdata")


def test_draw_labelmap_matches_reference():
  ref = np.load(os.path.join(DATA, "jhmdb_draw_labelmap_ref.npz"))
  h, w = ref["hw"]
  for pt, sigma, expected in zip(ref["pts"], ref["sigmas"], ref["maps"]):
    got = jhmdb.draw_labelmap(np.zeros((h, w)), pt, sigma)
    np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=str(pt))


def test_labels_have_background_first_and_peak_at_rounded_point():
  lab = jhmdb.joints_to_labels(np.array([[3.4, 2.6], [-9.0, -9.0]]), 6, 8)
  assert lab.shape == (6, 8, 3) and lab.dtype == np.float32
  assert lab[3, 3, 1] == 1.0 and np.all(lab[..., 2] == 0)
  # 4x4 window: rows/cols round(p) - 2 .. round(p) + 1.
  assert np.count_nonzero(lab[..., 1]) == 16
  assert lab[1:5, 1:5, 1].min() == pytest.approx(np.exp(-8 / 0.5))
  np.testing.assert_array_equal(lab[..., 0], lab[..., 1] == 0)


def test_decode_matches_reference_process_pose():
  ref = np.load(os.path.join(DATA, "jhmdb_process_pose_ref.npz"))
  for case in "abc":
    np.testing.assert_allclose(jhmdb.decode_pose(ref["in_" + case]),
                               ref["out_" + case], atol=1e-5)
  out = jhmdb.decode_pose(ref["in_a"])
  np.testing.assert_array_equal(out[2], [-1, -1])     # all-zero channel
  np.testing.assert_allclose(out[4], [6, 2])          # single nonzero


def test_decode_round_trip_of_integer_points():
  pts = np.array([[2.0, 3.0], [5.0, 4.0], [0.0, 1.0]])
  out = jhmdb.decode_pose(jhmdb.joints_to_labels(pts, 6, 7))
  # Peak 1 + two of the four exp(-2) neighbours: within 0.11 cells, except
  # that int() truncates pt - 1.5 toward zero, so for -1.5 < pt < 1.5 the
  # reference puts the peak one cell further (0 -> 1, 1 -> 2).
  peaks = pts + np.array([[0, 0], [0, 0], [1, 1]])
  assert np.abs(out - peaks).max() < 0.11


def test_scale_joints_to_grid():
  g = jhmdb.scale_joints_to_grid(np.array([[319.0, 239.0]]), 240, 320, 320,
                                 320)
  np.testing.assert_allclose(g, [[319 / 8, 239 * 320 / 240 / 8]])
  assert jhmdb.grid_size(*jhmdb.resized_size(240, 320, 320)) == (40, 40)
  assert jhmdb.grid_size(241, 100) == (31, 13)


def _clip(tmp_path, n_frames, n_joints):
  img = tmp_path / "Rename_Images" / "v"
  img.mkdir(parents=True)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for i in range(n_frames):
    Image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(
        img / f"{i + 1:05d}.png")
  mat = tmp_path / "joint_positions" / "v"
  mat.mkdir(parents=True)
  pos = np.arange(2 * 15 * n_joints, dtype=np.float64).reshape(2, 15, -1)
  scipy.io.savemat(mat / "joint_positions.mat", {"pos_img": pos + 1})
  return str(img), str(mat / "joint_positions.mat"), pos


def test_read_split_either_order_and_errors(tmp_path):
  img, mat, _ = _clip(tmp_path, 2, 2)
  lst = tmp_path / "list.txt"
  lst.write_text("Rename_Images/v joint_positions/v/joint_positions.mat\n\n"
                 "joint_positions/v/joint_positions.mat Rename_Images/v\n"
                 "joint_positions/v Rename_Images/v\n")
  assert jhmdb.read_split(str(lst), root=str(tmp_path)) == [(img, mat)] * 3
  lst.write_text("Rename_Images/missing joint_positions/v/x.mat\n")
  with pytest.raises(FileNotFoundError, match="missing"):
    jhmdb.read_split(str(lst), root=str(tmp_path))
  lst.write_text("a b\n")
  with pytest.raises(ValueError, match="which"):
    jhmdb.read_split(str(lst), root=str(tmp_path))
  with pytest.raises(FileNotFoundError):
    jhmdb.read_split(str(tmp_path / "nope.txt"))


def test_read_video_and_frame_count_mismatch(tmp_path):
  img, mat, pos = _clip(tmp_path, 3, 3)
  frames, joints = jhmdb.read_video(img, mat)
  assert frames.shape == (3, 4, 5, 3) and frames[2, 0, 0, 0] == 2
  np.testing.assert_allclose(joints, pos.transpose(2, 1, 0))
  scipy.io.savemat(mat, {"pos_img": np.ones((2, 15, 2))})
  with pytest.raises(ValueError, match="3 frames"):
    jhmdb.read_video(img, mat)


def test_real_clip_round_trip(data_root):
  root = os.path.join(data_root, "jhmdb_sample")
  vid = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
  frames, joints = jhmdb.read_video(
      os.path.join(root, "Rename_Images", vid),
      os.path.join(root, "joint_positions", vid, "joint_positions.mat"))
  assert frames.shape == (40, 240, 320, 3) and joints.shape == (40, 15, 2)
  h, w = jhmdb.resized_size(240, 320, 320)
  gh, gw = jhmdb.grid_size(h, w)
  grid = jhmdb.scale_joints_to_grid(joints[0], 240, 320, h, w)
  inside = (grid >= 0).all(1) & (grid[:, 0] < gw - 1) & (grid[:, 1] < gh - 1)
  assert inside.sum() >= 10
  out = jhmdb.decode_pose(jhmdb.joints_to_labels(grid, gh, gw))
  err = np.abs(out - grid)[inside]
  assert err.max() <= 0.62, err.max()  # round() + a ~0.1 neighbour pull.
