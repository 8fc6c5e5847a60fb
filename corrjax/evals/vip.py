"""VIP human parsing: data layout, nearest resize and mIoU as `eval_vip.py`.

Follows videowalk `code/eval/eval_vip.py` (metric) and `code/data/vos.py`
(frame order). Label maps are int [H, W] class ids, 20 classes, 0 is
background.

Layout (VIP_Fine release, the paths the reference reads):
  <root>/Images/<video>/<frame>.jpg                   frames
  <root>/Annotations/Category_ids/<video>/<frame>.png class ids (GT_DIR,
                                                      eval_vip.py:11)
Predictions: <pred_dir>/<video>/<frame>.png (test.py:164-166 writes them
with the frame's name and `jpg` replaced by `png`), paired with the GT by
folder and file name (eval_vip.py:46-61).
"""

import os

import numpy as np

from corrjax.evals import labels

NUM_CLASSES = 20


def confusion_matrix(gt: np.ndarray, pred: np.ndarray,
                     num_classes: int = NUM_CLASSES) -> np.ndarray:
  """[num_classes, num_classes] counts, rows GT, columns prediction.

  `fast_hist` (eval_vip.py:63-65): pixels whose GT is outside
  [0, num_classes) are ignored. The reference does not check predictions
  (it stops in pdb only above 20, :101-104), and a prediction equal to
  num_classes would land in the next GT row; here any prediction outside
  [0, num_classes) at a counted pixel is a ValueError.
  """
  gt = np.asarray(gt).astype(np.int64)
  pred = np.asarray(pred).astype(np.int64)
  if gt.shape != pred.shape:
    raise ValueError(f"gt {gt.shape} and pred {pred.shape} differ in shape")
  keep = (gt >= 0) & (gt < num_classes)
  p = pred[keep]
  if p.size and (p.min() < 0 or p.max() >= num_classes):
    raise ValueError(f"prediction ids must lie in [0, {num_classes}), got "
                     f"[{p.min()}, {p.max()}]")
  idx = num_classes * gt[keep] + p
  return np.bincount(idx, minlength=num_classes ** 2).reshape(
      num_classes, num_classes)


def per_class_iou(hist: np.ndarray) -> np.ndarray:
  """TP / (GT + Pred - TP) per class, NaN where 0 / 0 (eval_vip.py:143-146)."""
  hist = np.asarray(hist, np.float64)
  tp = np.diag(hist)
  with np.errstate(divide="ignore", invalid="ignore"):
    return tp / (hist.sum(1) + hist.sum(0) - tp)


def mean_iou(hist: np.ndarray) -> float:
  """nanmean of `per_class_iou` (eval_vip.py:146-147); classes absent from
  both GT and prediction do not count."""
  iou = per_class_iou(hist)
  if np.all(np.isnan(iou)):
    return float("nan")
  return float(np.nanmean(iou))


def _pil_nearest_index(src: int, dst: int) -> np.ndarray:
  """Pillow's NEAREST source index: the position starts at scale / 2 and
  adds scale = src / dst in float64 per output pixel, then truncates
  (Pillow `ImagingScaleAffine`); exact ties can fall either way."""
  steps = np.full(dst, src / dst)
  steps[0] = 0.5 * (src / dst)
  return np.clip(np.add.accumulate(steps).astype(np.int64), 0, src - 1)


def resize_nearest_like_reference(pred: np.ndarray, h: int, w: int,
                                  backend: str = "pil") -> np.ndarray:
  """Nearest-neighbour resize of [H, W, ...] to [h, w, ...].

  eval_vip.py:107-109 resizes the prediction with PIL `Image.NEAREST`
  (centre sampling, floor((i + 0.5) * H / h)); `backend="cv2"` gives
  OpenCV INTER_NEAREST (floor(i * H / h), corner sampling), as used by
  `convert_davis.py`. The two differ by up to one source pixel.
  """
  pred = np.asarray(pred)
  if backend not in ("pil", "cv2"):
    raise ValueError(f"backend must be 'pil' or 'cv2', got {backend!r}")
  if pred.shape[:2] == (h, w):
    return pred.copy()
  if backend == "cv2":
    return labels.resize_nearest(pred, h, w)
  return pred[_pil_nearest_index(pred.shape[0], h)][
      :, _pil_nearest_index(pred.shape[1], w)]


def _sorted_files(folder: str, ext: str) -> list[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"VIP folder {folder!r} does not exist")
  names = [n for n in os.listdir(folder) if n.lower().endswith(ext)]
  if not names:
    raise FileNotFoundError(f"no {ext} files in {folder!r}")
  try:
    names.sort(key=lambda n: int(n.split(".")[0]))  # vos.py:137-138
  except ValueError:
    names.sort()
  return [os.path.join(folder, n) for n in names]


def video_paths(root: str, video: str) -> tuple[list[str], list[str]]:
  """Frame and Category_ids paths of one video, checked to pair by name."""
  frames = _sorted_files(os.path.join(root, "Images", video), ".jpg")
  labels = _sorted_files(
      os.path.join(root, "Annotations", "Category_ids", video), ".png")
  stems = [os.path.splitext(os.path.basename(p))[0] for p in frames]
  lstems = [os.path.splitext(os.path.basename(p))[0] for p in labels]
  if stems != lstems:
    missing = sorted(set(stems) ^ set(lstems))[:5]
    raise ValueError(f"VIP video {video!r}: frames and Category_ids do not "
                     f"pair by name (e.g. {missing})")
  return frames, labels


def read_label(path: str) -> np.ndarray:
  """A Category_ids PNG as int32 [H, W] (eval_vip.py:91-92)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f"VIP label {path!r} does not exist")
  with Image.open(path) as im:
    ids = np.array(im, dtype=np.int32)
  if ids.ndim != 2:
    raise ValueError(f"{path!r}: expected a single-channel id map, got "
                     f"shape {ids.shape}")
  return ids


def read_video(root: str, video: str) -> tuple[np.ndarray, np.ndarray]:
  """Frames uint8 [T, H, W, 3] RGB and class ids int32 [T, H, W]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  frames, labels = video_paths(root, video)
  imgs = []
  for p in frames:
    with Image.open(p) as im:
      imgs.append(np.asarray(im.convert("RGB"), np.uint8))
  ids = [read_label(p) for p in labels]
  for p, a, b in zip(frames, imgs, ids):
    if a.shape[:2] != b.shape:
      raise ValueError(f"{p!r}: frame {a.shape[:2]} vs label {b.shape}")
  return np.stack(imgs), np.stack(ids)


def read_prediction(path: str) -> np.ndarray:
  """A saved prediction as eval_vip.py:93-95 and :111-112 read it: cv2
  (BGR) channels, the last one (R) taken; grey PNGs give the grey value."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    arr = np.array(im.convert("RGB"), dtype=np.int32)
  return arr[..., 0]  # RGB red == cv2 BGR last channel.


def pair_predictions(pred_dir: str,
                     gt_dir: str) -> list[tuple[str, str]]:
  """[(pred_path, gt_path)] for every <video>/<frame>.png under pred_dir.

  gt_dir is the Category_ids folder. Files other than .png (the reference's
  `*_blend.jpg`, which must be deleted before eval_vip.py runs) are skipped.
  """
  if not os.path.isdir(pred_dir):
    raise FileNotFoundError(f"prediction folder {pred_dir!r} not found")
  pairs = []
  for vid in sorted(os.listdir(pred_dir)):
    vdir = os.path.join(pred_dir, vid)
    if not os.path.isdir(vdir):
      continue
    for name in sorted(os.listdir(vdir)):
      if not name.lower().endswith(".png"):
        continue
      gt = os.path.join(gt_dir, vid, name)
      if not os.path.isfile(gt):
        raise FileNotFoundError(f"no ground truth {gt!r} for prediction "
                                f"{os.path.join(vdir, name)!r}")
      pairs.append((os.path.join(vdir, name), gt))
  if not pairs:
    raise FileNotFoundError(f"no <video>/<frame>.png under {pred_dir!r}")
  return pairs


def evaluate_folder(pred_dir: str, gt_dir: str,
                    num_classes: int = NUM_CLASSES) -> tuple[np.ndarray,
                                                             float]:
  """Dataset-wide confusion matrix and mIoU (compute_hist, :86-118)."""
  hist = np.zeros((num_classes, num_classes), np.int64)
  for pred_path, gt_path in pair_predictions(pred_dir, gt_dir):
    gt = read_label(gt_path)
    pred = read_prediction(pred_path)
    if pred.shape != gt.shape:
      pred = resize_nearest_like_reference(pred, *gt.shape)
    hist += confusion_matrix(gt, pred, num_classes)
  return hist, mean_iou(hist)
