"""Keypoint propagation on JHMDB-style videos, scored by PCK.

Protocol (videowalk `code/data/jhmdb.py`, `code/test.py`,
`code/utils/test_utils.py:55-77`, `code/eval/eval_pck.py`): frames resized
to a crop_size x crop_size square, frame 0's 15 joints drawn as Gaussian
maps (sigma 0.5 cells) on the stride-8 grid plus a background channel,
label propagation, each frame decoded from its top-3 cells per joint, PCK
with 0.6 x the GT joint-box diagonal, frame 0 skipped, pooled per joint.
"""

from collections.abc import Callable, Iterable
import dataclasses
import glob
import os
import time

import numpy as np

from corrjax.evals import jhmdb
from corrjax.evals import label_propagation
from corrjax.evals import labels as labels_lib
from corrjax.evals import pck as pck_lib


@dataclasses.dataclass(frozen=True)
class PoseVideo:
  """name; frames uint8 [T, H, W, 3]; joints float [T, J, 2] 0-based (x, y)
  pixels, pixel (row i, col j) centred at (j, i)."""
  name: str
  frames: np.ndarray
  joints: np.ndarray


def read_videos(root: str, split_file: str = "",
                select=None) -> list[PoseVideo]:
  """JHMDB videos from a split list, or every video under `root`; with
  `select`, those whose names (image folder names) it returns.

  Without `split_file`, videos are `<root>/Rename_Images/<class>/<video>`
  with joints in `<root>/joint_positions/<class>/<video>/
  joint_positions.mat`.
  """
  if split_file:
    pairs = jhmdb.read_split(split_file, root)
  else:
    dirs = sorted(glob.glob(os.path.join(root, "Rename_Images", "*", "*")))
    if not dirs:
      raise FileNotFoundError(f"no videos under {root}/Rename_Images.")
    pairs = [(d, os.path.join(root, "joint_positions",
                              *d.split(os.sep)[-2:], "joint_positions.mat"))
             for d in dirs]
  if select is not None:
    by_name = {os.path.basename(p[0]): p for p in pairs}
    pairs = [by_name[n] for n in select(list(by_name))]
  videos = []
  for image_dir, mat_path in pairs:
    frames, joints = jhmdb.read_video(image_dir, mat_path)
    videos.append(PoseVideo(os.path.basename(image_dir), frames, joints))
  return videos


def predict_pose(video: PoseVideo,
                 feature_fn: Callable[[np.ndarray], np.ndarray], *,
                 topk: int, radius: float, context: int, temperature: float,
                 crop_size: int, sigma: float = 0.5,
                 stride: int = 8) -> np.ndarray:
  """float [T, J, 2] predicted (x, y) in grid cells; -1 where lost."""
  if crop_size <= 0:
    raise ValueError("JHMDB evaluation needs crop_size > 0 (the reference "
                     "resizes to a square, e.g. 320).")
  height, width = video.frames.shape[1:3]
  new_h, new_w = jhmdb.resized_size(height, width, crop_size)
  frames = labels_lib.resize_frames(video.frames, new_h, new_w)
  grid_h, grid_w = jhmdb.grid_size(new_h, new_w, stride)
  feats = feature_fn(frames)
  if feats.shape[1:3] != (grid_h, grid_w):
    raise ValueError(f"{video.name}: features {feats.shape[1:3]} are not on "
                     f"the {grid_h}x{grid_w} grid.")
  joints0 = jhmdb.scale_joints_to_grid(video.joints[0], height, width,
                                       new_h, new_w, stride)
  labels0 = jhmdb.joints_to_labels(joints0, grid_h, grid_w, sigma)
  soft = np.asarray(label_propagation.propagate(
      feats, labels0, topk=topk, radius=radius, context=context,
      temperature=temperature))
  return np.stack([jhmdb.decode_pose(s) for s in soft])


def evaluate(videos: Iterable[PoseVideo],
             feature_fn: Callable[[np.ndarray], np.ndarray], *, topk: int,
             radius: float, context: int, temperature: float,
             crop_size: int, sigma: float = 0.5, stride: int = 8,
             log: Callable[[str], None] = print) -> dict:
  """PCK over `videos` (pck.dataset_pck's dict: pck, per_joint, count)."""
  videos = list(videos)
  scored, start = [], time.time()
  for i, video in enumerate(videos):
    pred = predict_pose(video, feature_fn, topk=topk, radius=radius,
                        context=context, temperature=temperature,
                        crop_size=crop_size, sigma=sigma, stride=stride)
    height, width = video.frames.shape[1:3]
    scored.append((pred, video.joints, height, width))
    log(f"  pose [{i + 1}/{len(videos)}] {video.name}: {len(pred)} frames, "
        f"{time.time() - start:.0f}s elapsed")
  grid = jhmdb.grid_size(crop_size, crop_size, stride)[0]
  return pck_lib.dataset_pck(scored, feat_res=grid)
