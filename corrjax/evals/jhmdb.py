"""JHMDB pose propagation: split lists, clips, keypoint label maps, decoding.

Follows videowalk (CRW) `code/data/jhmdb.py` and `code/utils/test_utils.py`.
Coordinates are (x, y) throughout: x is the column, y the row. Image joints
are 0-based pixels (`pos_img - 1`, jhmdb.py:233-234); grid joints are in
feature cells, pixel / (resized / original) / stride (jhmdb.py:238-239),
with cell (i, j) at grid coordinate (x=j, y=i) and no half-cell offset.
"""

import math
import os

import numpy as np
import scipy.io

NUM_JOINTS = 15


def _resolve(token: str, root: str | None) -> str:
  if root is None or os.path.isabs(token):
    return token
  return os.path.join(root, token)


def read_split(path: str, root: str | None = None) -> list[tuple[str, str]]:
  """Reads a JHMDB split list into [(image_dir, mat_path), ...].

  CRW lists are `imgdir matpath` (jhmdb.py:142-148, eval_pck.py:24-32); the
  UVC `testlist_split1.txt` is `matpath imgdir`. The order is detected per
  line from the token ending in `.mat`. A line with no `.mat` token whose one
  token is a folder holding `joint_positions.mat` is accepted as well (the
  commented-out suffix at eval_pck.py:25). Relative paths are joined to
  `root`. Blank lines and lines starting with `#` are skipped.

  Raises:
    FileNotFoundError: the list, an image folder or a .mat file is missing.
    ValueError: a line does not hold exactly one image folder and one .mat.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"JHMDB split list {path!r} does not exist")
  out = []
  with open(path) as f:
    for num, line in enumerate(f, 1):
      tokens = line.split()
      if not tokens or tokens[0].startswith("#"):
        continue
      where = f"{path}:{num}"
      if len(tokens) != 2:
        raise ValueError(f"{where}: expected 2 paths, got {len(tokens)}")
      paths = [_resolve(t, root) for t in tokens]
      is_mat = [t.lower().endswith(".mat") for t in tokens]
      if sum(is_mat) == 0:
        is_mat = [os.path.isfile(os.path.join(p, "joint_positions.mat"))
                  for p in paths]
        paths = [os.path.join(p, "joint_positions.mat") if m else p
                 for p, m in zip(paths, is_mat)]
      if sum(is_mat) != 1:
        raise ValueError(f"{where}: cannot tell which of {tokens} is the "
                         "joint_positions .mat file")
      mat_path = paths[is_mat.index(True)]
      image_dir = paths[is_mat.index(False)]
      if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"{where}: image folder {image_dir!r} "
                                "does not exist")
      if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"{where}: {mat_path!r} does not exist")
      out.append((image_dir, mat_path))
  return out


def frame_paths(image_dir: str) -> list[str]:
  """The `.png` frames of a clip, sorted by integer stem (jhmdb.py:161-164)."""
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f"JHMDB image folder {image_dir!r} not found")
  names = [n for n in os.listdir(image_dir) if ".png" in n]
  if not names:
    raise FileNotFoundError(f"no .png frames in {image_dir!r}")
  try:
    names.sort(key=lambda n: int(n.split(".")[0]))
  except ValueError as e:
    raise ValueError(f"non-numeric frame name in {image_dir!r}: {e}") from e
  return [os.path.join(image_dir, n) for n in names]


def read_joints(mat_path: str) -> np.ndarray:
  """`pos_img` [2, 15, T] (1-based) → float32 [T, 15, 2] 0-based (x, y)."""
  if not os.path.isfile(mat_path):
    raise FileNotFoundError(f"JHMDB joints file {mat_path!r} not found")
  mat = scipy.io.loadmat(mat_path)
  if "pos_img" not in mat:
    raise KeyError(f"{mat_path!r} has no 'pos_img' variable")
  pos = np.asarray(mat["pos_img"], np.float64)
  if pos.ndim != 3 or pos.shape[:2] != (2, NUM_JOINTS):
    raise ValueError(f"{mat_path!r}: pos_img shape {pos.shape}, expected "
                     f"(2, {NUM_JOINTS}, T)")
  return (pos - 1.0).transpose(2, 1, 0).astype(np.float32)


def read_video(image_dir: str, mat_path: str) -> tuple[np.ndarray,
                                                        np.ndarray]:
  """Reads a clip: frames uint8 [T, H, W, 3] RGB, joints float32 [T, 15, 2].

  Joints are (x, y) 0-based pixels of the original frames. The reference
  silently reuses the last label map when the .mat holds fewer frames than
  the folder (jhmdb.py:258-264); here a mismatch is an error.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  paths = frame_paths(image_dir)
  joints = read_joints(mat_path)
  if len(paths) != joints.shape[0]:
    raise ValueError(f"{image_dir!r} has {len(paths)} frames but "
                     f"{mat_path!r} has joints for {joints.shape[0]}")
  frames = []
  for p in paths:
    with Image.open(p) as im:
      frames.append(np.asarray(im.convert("RGB"), np.uint8))
  if len({f.shape for f in frames}) != 1:
    raise ValueError(f"frames in {image_dir!r} differ in size")
  return np.stack(frames), joints


def resized_size(img_h: int, img_w: int, crop_size: int) -> tuple[int, int]:
  """Frame size after the reference resize (jhmdb.py:205-221).

  `ratio = 1.0` there, so a positive `cropSize` makes every frame square,
  crop_size x crop_size (320x240 → 320x320); `cropSize <= 0` would leave
  `newh`/`neww` undefined in the reference, here it keeps the size.
  """
  if crop_size > 0:
    return crop_size, crop_size
  return img_h, img_w


def grid_size(new_h: int, new_w: int, stride: int = 8) -> tuple[int, int]:
  """Label grid (ceil(h / stride), ceil(w / stride)) (jhmdb.py:229)."""
  return math.ceil(new_h / stride), math.ceil(new_w / stride)


def scale_joints_to_grid(joints: np.ndarray, img_h: int, img_w: int,
                         new_h: int, new_w: int,
                         stride: int = 8) -> np.ndarray:
  """0-based pixel (x, y) [..., 2] → grid units (jhmdb.py:231-239)."""
  j = np.asarray(joints, np.float64)
  x = j[..., 0] * float(new_w) / float(img_w) / stride
  y = j[..., 1] * float(new_h) / float(img_h) / stride
  return np.stack([x, y], -1)


def draw_labelmap(img: np.ndarray, pt, sigma: float) -> np.ndarray:
  """Writes an unnormalised Gaussian at pt = (x, y) into img [h, w], in place.

  Mirrors `draw_labelmap_np` (jhmdb.py:287-319): window corners
  ul = int(pt - 3σ), br = int(pt + 3σ + 1) with Python's truncation toward
  zero, a Gaussian of ceil(6σ + 1) taps centred on tap (6σ + 1) // 2,
  clipped to the map and assigned (not max-ed) over what is there; nothing
  is drawn when the window misses the map. σ = 0.5: a 4x4 patch with its
  peak at int(pt - 1.5) + 2, i.e. round-half-up(pt) for pt >= 1.5 but one
  cell further for -1.5 < pt < 1.5 (truncation toward zero): a joint at
  grid x = 0 peaks at column 1.
  """
  h, w = img.shape[:2]
  ul = [int(pt[0] - 3 * sigma), int(pt[1] - 3 * sigma)]
  br = [int(pt[0] + 3 * sigma + 1), int(pt[1] + 3 * sigma + 1)]
  if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
    return img
  size = 6 * sigma + 1
  x = np.arange(0, size, 1, float)
  y = x[:, None]
  c = size // 2
  g = np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma ** 2))
  gx = max(0, -ul[0]), min(br[0], w) - ul[0]
  gy = max(0, -ul[1]), min(br[1], h) - ul[1]
  ix = max(0, ul[0]), min(br[0], w)
  iy = max(0, ul[1]), min(br[1], h)
  img[iy[0]:iy[1], ix[0]:ix[1]] = g[gy[0]:gy[1], gx[0]:gx[1]]
  return img


def joints_to_labels(joints_xy_grid: np.ndarray, grid_h: int, grid_w: int,
                     sigma: float = 0.5) -> np.ndarray:
  """Keypoints [J, 2] (x, y, grid units) → label map float32 [h, w, J + 1].

  Channel 0 is background, 1 where every joint channel is 0 (jhmdb.py:266);
  channel 1 + j is joint j drawn by `draw_labelmap` (jhmdb.py:244-249). With
  sigma <= 0, a one-hot at (int(x), int(y)) when inside (jhmdb.py:250-254).
  """
  pts = np.asarray(joints_xy_grid, np.float64)
  maps = np.zeros((grid_h, grid_w, pts.shape[0]), np.float64)
  for j, pt in enumerate(pts):
    if sigma > 0:
      draw_labelmap(maps[:, :, j], pt, sigma)
    else:
      tx, ty = int(pt[0]), int(pt[1])
      if 0 <= tx < grid_w and 0 <= ty < grid_h:
        maps[ty, tx, j] = 1.0
  background = (maps.sum(-1) == 0)[..., None]
  return np.concatenate([background, maps], -1).astype(np.float32)


def decode_pose(soft_labels: np.ndarray, topk: int = 3) -> np.ndarray:
  """Soft label map [h, w, 1 + J] → keypoints float64 [J, 2] (x, y) in cells.

  `process_pose` (test_utils.py:55-66): drop channel 0, take each joint's
  top-k cells (k = min(h * w, 3)), renormalise their values to sum 1 and
  return the weighted mean (column, row); -1 for a channel summing to 0.
  Ties are broken towards the lower row-major index (torch.topk leaves this
  unspecified); it only matters when the k-th and (k+1)-th values are equal.
  """
  pred = np.asarray(soft_labels, np.float64)[..., 1:]
  h, w, j = pred.shape
  flat = pred.reshape(h * w, j)
  k = min(h * w, topk)
  ids = np.argsort(-flat, axis=0, kind="stable")[:k]
  vals = np.take_along_axis(flat, ids, 0)
  with np.errstate(invalid="ignore", divide="ignore"):
    vals = vals / vals.sum(0)[None]
  xy = np.stack([((ids % w) * vals).sum(0), ((ids // w) * vals).sum(0)], -1)
  xy[flat.sum(0) == 0] = -1.0
  return xy
