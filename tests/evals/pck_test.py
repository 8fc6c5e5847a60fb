"""JHMDB PCK vs videowalk `code/eval/eval_pck.py`, run as a script.

`testdata/pck_eval_pck_ref.npz` was made by a throwaway script (not in the
repo) that wrote 3 random clips (GT .mat files, a first frame for the size,
grid predictions as `{i}.dat` with invisible joints, a frame with a single
visible joint so its box is 0, exact hits) to /tmp, and exec'ed the
unmodified eval_pck.py from github.com/ajabri/videowalk with only its two
hard-coded paths swapped; `computePCK` outputs (percent, 15 joints + mean),
the boxes and the per-joint counts were saved.
"""

import os

import numpy as np
import pytest

from corrjax.evals import pck

DATA = os.path.join(os.path.dirname(__file__), "testdata")


def test_dataset_pck_matches_reference_script():
  ref = np.load(os.path.join(DATA, "pck_eval_pck_ref.npz"))
  videos = [(p, g, h, w) for p, g, (h, w) in
            zip(ref["preds"], ref["gts"], ref["sizes"])]
  out = pck.dataset_pck(videos, alphas=tuple(ref["alphas"]))
  np.testing.assert_array_equal(out["count"], ref["counts"])
  for i, a in enumerate(ref["alphas"]):
    np.testing.assert_allclose(out["per_joint"][a] * 100, ref["pck"][i, :15],
                               atol=1e-9)
    assert out["pck"][a] * 100 == pytest.approx(ref["pck"][i, 15])


def _video(t=4, h=240, w=320, seed=0):
  rng = np.random.default_rng(seed)
  gt = np.stack([rng.uniform(10, w - 10, (t, 15)),
                 rng.uniform(10, h - 10, (t, 15))], -1)
  grid = gt / np.array([w, h]) * 40
  return grid, gt


def test_perfect_prediction_is_one():
  grid, gt = _video()
  out = pck.pck(grid, gt, 240, 320)
  assert all(v == 1.0 for v in out["pck"].values())
  assert np.all(out["count"] == 3)   # frame 0 skipped


def test_boundary_at_alpha_times_box():
  grid, gt = _video(t=2)
  lo, hi = gt[1].min(0), gt[1].max(0)
  box = 0.6 * np.linalg.norm(hi - lo)
  pred_px = gt.copy()
  # The box comes from the GT, so moving predictions leaves it unchanged.
  pred_px[1, 0, 1] += 0.25 * box   # passes 0.3, fails 0.2
  pred_px[1, 1, 0] += 0.1 * box    # on the 0.1 boundary (<= counts)
  d = pck.normalized_distances(pred_px / [320, 240] * 40, gt, 240, 320)
  assert d[1, 1] == pytest.approx(0.1)
  out = pck.pck(pred_px / [320, 240] * 40, gt, 240, 320,
                alphas=(0.1, 0.2, 0.3))
  assert out["per_joint"][0.2][0] == 0 and out["per_joint"][0.3][0] == 1
  assert out["per_joint"][0.1][1] == (d[1, 1] <= 0.1)
  assert out["pck"][0.1] == pytest.approx(np.mean(d[1] <= 0.1))


def test_invisible_joints_shrink_box_and_are_not_counted():
  grid, gt = _video(t=3)
  grid[1:, 3:, 0] = -1
  d = pck.normalized_distances(grid, gt, 240, 320)
  assert np.isnan(d[0]).all() and np.isnan(d[1:, 3:]).all()
  np.testing.assert_allclose(d[1:, :3], 0, atol=1e-12)
  grid, gt = _video(t=3)
  grid[2, 1:, 0] = -1        # one visible joint: box 0, d 0 -> never right
  out = pck.pck(grid, gt, 240, 320)
  assert out["per_joint"][0.5][0] == 0.5 and out["count"][0] == 2
  grid[:, 5, 0] = -1
  with pytest.raises(ValueError, match="no visible"):
    pck.pck(grid, gt, 240, 320)


def test_feat_res_scaling():
  np.testing.assert_allclose(pck.grid_to_pixels([[20.0, 10.0]], 240, 320, 40),
                             [[160.0, 60.0]])
  np.testing.assert_allclose(pck.grid_to_pixels([[20.0, 10.0]], 240, 320, 80),
                             [[80.0, 30.0]])
