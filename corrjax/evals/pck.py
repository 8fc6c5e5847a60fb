"""JHMDB PCK exactly as videowalk `code/eval/eval_pck.py`.

Shapes: predictions [T, 15, 2] (x, y) in feature-grid cells (what
`jhmdb.decode_pose` returns per frame; the reference stores them as
`{vid}.dat` [2, 15, T]), ground truth [T, 15, 2] (x, y) 0-based pixels of
the original frame (`pos_img - 1`, eval_pck.py:27-28).

Dataset level (eval_pck.py:99-144): the normalised distances of all videos
are appended per joint, PCK is computed per joint over that pool, and the
reported number is the mean of the 15 per-joint PCKs (not a pooled count).
`dataset_pck` does this; `pck` is the same for one video.
"""

import numpy as np

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5)


def grid_to_pixels(pred: np.ndarray, img_h: int, img_w: int,
                   feat_res: int = 40) -> np.ndarray:
  """Grid (x, y) → pixels: x / feat_res * W, y / feat_res * H (:60-63).

  The reference hard-codes feat_res = 40 (eval_pck.py:21), i.e. a 320x320
  resize with stride 8, and takes H, W from the clip's first frame (:32-35).
  """
  p = np.array(pred, np.float64)
  p[..., 0] = p[..., 0] / float(feat_res) * img_w
  p[..., 1] = p[..., 1] / float(feat_res) * img_h
  return p


def normalized_distances(pred: np.ndarray, gt: np.ndarray, img_h: int,
                         img_w: int, feat_res: int = 40) -> np.ndarray:
  """Per-frame, per-joint distance / box, float64 [T, 15]; NaN if unused.

  Visible iff the grid prediction's x >= 0 (eval_pck.py:51-56; a NaN x
  counts as visible). The box of frame t is 0.6 x the diagonal of the
  bounding box of the GT joints whose prediction is visible (:70-95); with
  none visible it is 0.6 * |(-1, -1) - (1e6, 1e6)| as in the reference.
  Frame 0 is skipped (:116). A zero box gives inf (NaN for d = 0, stored
  as inf here), which never passes a threshold but still counts in the
  denominator; NaN marks only the unused entries.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be "
                     "[T, J, 2]")
  visible = ~(pred[..., 0] < 0)
  pix = grid_to_pixels(pred, img_h, img_w, feat_res)
  vis = visible[..., None]
  lo = np.minimum(np.where(vis, gt, 1e6).min(1), 1e6)
  hi = np.maximum(np.where(vis, gt, -1.0).max(1), -1.0)
  box = 0.6 * np.linalg.norm(hi - lo, axis=-1)
  d = np.linalg.norm(pix - gt, axis=-1)
  with np.errstate(divide="ignore", invalid="ignore"):
    out = d / box[:, None]
  out[np.isnan(out)] = np.inf  # 0 / 0 or NaN input: used, never correct.
  out[~visible] = np.nan
  out[0] = np.nan
  return out


def pck_from_distances(dists: list[np.ndarray],
                       alphas=ALPHAS) -> dict:
  """PCK from per-video [T, J] normalised distances (computePCK, :130-144).

  Returns {"pck": {alpha: mean over joints}, "per_joint": {alpha: [J]},
  "count": [J]}, as fractions (the reference prints percentages). A joint
  with no used entries is a ZeroDivisionError in the reference; here a
  ValueError.
  """
  num_joints = dists[0].shape[1]
  pools = [np.concatenate([d[:, j][~np.isnan(d[:, j])] for d in dists])
           for j in range(num_joints)]
  count = np.array([len(p) for p in pools])
  if np.any(count == 0):
    raise ValueError(f"joints {np.flatnonzero(count == 0).tolist()} have no "
                     "visible predictions after frame 0")
  per_joint, mean = {}, {}
  for a in alphas:
    pj = np.array([np.count_nonzero(p <= a) / len(p) for p in pools])
    per_joint[a] = pj
    mean[a] = float(np.mean(pj))
  return {"pck": mean, "per_joint": per_joint, "count": count}


def pck(pred: np.ndarray, gt: np.ndarray, img_h: int, img_w: int,
        alphas=ALPHAS, feat_res: int = 40) -> dict:
  """PCK of one video; pred grid (x, y) [T, 15, 2], gt pixels [T, 15, 2]."""
  d = normalized_distances(pred, gt, img_h, img_w, feat_res)
  return pck_from_distances([d], alphas)


def dataset_pck(videos, alphas=ALPHAS, feat_res: int = 40) -> dict:
  """PCK over videos [(pred, gt, img_h, img_w), ...], pooled per joint."""
  dists = [normalized_distances(p, g, h, w, feat_res)
           for p, g, h, w in videos]
  if not dists:
    raise ValueError("no videos")
  return pck_from_distances(dists, alphas)
