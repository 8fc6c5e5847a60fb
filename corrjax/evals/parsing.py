"""Human-part propagation on VIP-style videos, scored by dataset mIoU.

Protocol (videowalk `code/test.py`, `code/eval/eval_vip.py`; settings from
videowalk issue #10: context 4, cropSize 560): frame 0's 20-class part map
propagated like a DAVIS mask (square resize, soft one-hot at stride 8,
bilinear up, argmax); predictions brought back to the frame size with PIL
nearest (eval_vip.py:107-109); one confusion matrix over every frame of
every video (frame 0 included, as test.py writes it), mIoU = nanmean of the
per-class IoU.
"""

from collections.abc import Callable, Iterable
import functools
import glob
import os
import time

import numpy as np

from corrjax.evals import vip
from corrjax.evals import vos


def read_videos(root: str, select=None) -> list[vos.Video]:
  """Videos under `<root>/Images` (all, or `select(names)`), with their
  Category_ids maps."""
  names = sorted(os.path.basename(d) for d in
                 glob.glob(os.path.join(root, "Images", "*"))
                 if os.path.isdir(d))
  if not names:
    raise FileNotFoundError(f"no videos under {root}/Images.")
  if select is not None:
    names = select(names)
  return [vos.Video(n, *vip.read_video(root, n)) for n in names]


def evaluate(videos: Iterable[vos.Video],
             feature_fn: Callable[[np.ndarray], np.ndarray], *, topk: int,
             radius: float, context: int, temperature: float,
             crop_size: int, num_classes: int = vip.NUM_CLASSES,
             stride: int = 8, log: Callable[[str], None] = print) -> dict:
  """{"mIoU": float, "per_class_iou": float [num_classes] (NaN if absent)}."""
  hist = np.zeros((num_classes, num_classes), np.int64)
  videos = list(videos)
  start = time.time()
  resize_back = functools.partial(vip.resize_nearest_like_reference,
                                  backend="pil")
  for i, video in enumerate(videos):
    # Ignored GT ids (>= num_classes, e.g. 255) seed no class of their own.
    first = np.where(video.masks[:1] < num_classes, video.masks[:1], 0)
    seeded = vos.Video(video.name, video.frames,
                       np.concatenate([first, video.masks[1:]]))
    pred = vos.predict_video(seeded, feature_fn, topk=topk, radius=radius,
                             context=context, temperature=temperature,
                             crop_size=crop_size, resize_back=resize_back,
                             stride=stride)
    hist += vip.confusion_matrix(video.masks, pred, num_classes)
    log(f"  parsing [{i + 1}/{len(videos)}] {video.name}: {len(pred)} "
        f"frames, {time.time() - start:.0f}s elapsed")
  return {"mIoU": vip.mean_iou(hist),
          "per_class_iou": vip.per_class_iou(hist)}
