"""VIP confusion matrix, mIoU and nearest resize vs videowalk eval_vip.py.

`testdata/vip_eval_vip_ref.npz` was made by a throwaway script (not in the
repo) that wrote 4 GT Category_ids PNGs (ids 0-19 and 255, class 13 absent
everywhere) and 4 RGB prediction PNGs (class in R, noise in G and B; one
video at a smaller size so it is resized) under /tmp, then exec'ed the
unmodified eval_vip.py from github.com/ajabri/videowalk with `-g/-p` set:
`compute_hist` on `init_path()` gave `hist`, `show_result` printed the
saved mIoU; `fast_hist` was also run on random ids in [-3, 25).
"""

import os

import numpy as np
import pytest
from PIL import Image

from corrjax.evals import vip

DATA = os.path.join(os.path.dirname(__file__), "testdata")


def test_fast_hist_matches_reference():
  ref = np.load(os.path.join(DATA, "vip_eval_vip_ref.npz"))
  np.testing.assert_array_equal(
      vip.confusion_matrix(ref["fast_a"], ref["fast_b"]), ref["fast_hist"])


def test_folder_eval_matches_reference(tmp_path):
  ref = np.load(os.path.join(DATA, "vip_eval_vip_ref.npz"))
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  for i, name in enumerate(ref["names"]):
    for root, arr in ((gt_dir, ref[f"gt{i}"]), (pred_dir, ref[f"pred{i}"])):
      (root / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
      Image.fromarray(arr).save(root / f"{name}.png")
  (pred_dir / "videos1" / "000000000001.jpg_blend.jpg").write_bytes(b"x")
  hist, miou = vip.evaluate_folder(str(pred_dir), str(gt_dir))
  np.testing.assert_array_equal(hist, ref["hist"])
  assert miou == pytest.approx(float(ref["miou"]), abs=1e-12)
  assert np.isnan(vip.per_class_iou(hist)[13])


def test_two_class_toy_miou():
  gt = np.array([[0, 0, 1, 1]])
  pred = np.array([[0, 1, 1, 1]])
  hist = vip.confusion_matrix(gt, pred, num_classes=2)
  np.testing.assert_array_equal(hist, [[1, 1], [0, 2]])
  # IoU_0 = 1 / (2 + 1 - 1) = 1/2, IoU_1 = 2 / (2 + 3 - 2) = 2/3.
  assert vip.mean_iou(hist) == pytest.approx((1 / 2 + 2 / 3) / 2)
  assert vip.mean_iou(vip.confusion_matrix(gt, pred)) == pytest.approx(
      (1 / 2 + 2 / 3) / 2)   # 18 absent classes are NaN, not 0
  with pytest.raises(ValueError, match="prediction ids"):
    vip.confusion_matrix(gt, pred + 19)
  assert vip.confusion_matrix(gt + 255, pred + 19).sum() == 0  # GT ignored


@pytest.mark.parametrize("src,dst", [((23, 31), (30, 41)), ((11, 17), (30, 41)),
                                     ((2, 7), (7, 2)), ((480, 854), (60, 107)),
                                     ((60, 107), (480, 854)), ((5, 5), (5, 5))])
def test_nearest_matches_pil_and_cv2(src, dst):
  cv2 = pytest.importorskip("cv2")
  x = np.random.default_rng(0).integers(0, 255, src + (3,)).astype(np.uint8)
  pil = np.array(Image.fromarray(x).resize(dst[::-1], Image.NEAREST))
  np.testing.assert_array_equal(
      vip.resize_nearest_like_reference(x, *dst), pil)
  ocv = cv2.resize(x, dst[::-1], interpolation=cv2.INTER_NEAREST)
  np.testing.assert_array_equal(
      vip.resize_nearest_like_reference(x, *dst, backend="cv2"), ocv)


def test_reader_layout_and_errors(tmp_path):
  img = tmp_path / "Images" / "videos3"
  lab = tmp_path / "Annotations" / "Category_ids" / "videos3"
  img.mkdir(parents=True)
  lab.mkdir(parents=True)
  for i in (10, 2):
    Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(img / f"{i:012d}.jpg")
    Image.fromarray(np.full((4, 6), i, np.uint8)).save(lab / f"{i:012d}.png")
  frames, ids = vip.read_video(str(tmp_path), "videos3")
  assert frames.shape == (2, 4, 6, 3) and ids.shape == (2, 4, 6)
  np.testing.assert_array_equal(ids[:, 0, 0], [2, 10])
  with pytest.raises(FileNotFoundError, match="videos9"):
    vip.read_video(str(tmp_path), "videos9")
  os.remove(lab / f"{10:012d}.png")
  Image.fromarray(np.zeros((4, 6), np.uint8)).save(lab / "000000000011.png")
  with pytest.raises(ValueError, match="pair"):
    vip.read_video(str(tmp_path), "videos3")
  with pytest.raises(FileNotFoundError, match="ground truth"):
    vip.pair_predictions(str(lab.parent), str(tmp_path / "nope"))
