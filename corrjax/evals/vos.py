"""Video object segmentation by label propagation: predictions and J&F.

For each video: features of every frame, frame 0's ground truth as soft
one-hot labels at feature resolution, `label_propagation.propagate`, then
bilinear upsampling and argmax; J and F per object and frame (DAVIS
semi-supervised protocol), palette PNGs `<out>/<video>/%05d.png` and an
overlay strip `<out>/overlays/<video>.png`.
"""

from collections.abc import Callable, Iterable
import dataclasses
import os
import time

import numpy as np

from corrjax.evals import davis_metrics
from corrjax.evals import label_propagation
from corrjax.evals import labels as labels_lib
from corrjax.evals import visualize


@dataclasses.dataclass(frozen=True)
class Video:
  """name; frames uint8 [T, H, W, 3]; masks int [T, H, W] ids (0 = bg)."""
  name: str
  frames: np.ndarray
  masks: np.ndarray


def predict_video(video: Video, feature_fn: Callable[[np.ndarray], np.ndarray],
                  *, topk: int, radius: float, context: int,
                  temperature: float, stride: int = 8) -> np.ndarray:
  """int32 [T, H, W] predicted ids; frame 0 is the ground truth's."""
  t, height, width = video.masks.shape
  if video.frames.shape[:3] != (t, height, width):
    raise ValueError(f"{video.name}: frames {video.frames.shape[:3]} and "
                     f"masks {video.masks.shape} differ in size.")
  num_classes = int(video.masks[0].max()) + 1
  feats = feature_fn(video.frames)
  grid = labels_lib.feature_grid(height, width, stride)
  if feats.shape[1:3] != grid:
    raise ValueError(f"{video.name}: features {feats.shape[1:3]} are not on "
                     f"the stride-{stride} grid {grid} of {height}x{width}.")
  labels0 = labels_lib.downsample_labels(video.masks[0], num_classes, stride)
  soft = np.asarray(label_propagation.propagate(
      feats, labels0, topk=topk, radius=radius, context=context,
      temperature=temperature))
  preds = [labels_lib.upsample_argmax(s, height, width) for s in soft[1:]]
  return np.stack([video.masks[0].astype(np.int32)] + preds)


def evaluate(videos: Iterable[Video],
             feature_fn: Callable[[np.ndarray], np.ndarray], *, topk: int,
             radius: float, context: int, temperature: float,
             out_dir: str | None = None, overlay_frames: int = 4,
             log: Callable[[str], None] = print) -> dict:
  """Propagates, scores and (optionally) writes PNGs for every video.

  Returns:
    davis_metrics.summarize(...) of all videos: global J&F, J, F statistics
    and per-object rows.
  """
  per_sequence = {}
  videos = list(videos)
  start = time.time()
  for i, video in enumerate(videos):
    pred = predict_video(video, feature_fn, topk=topk, radius=radius,
                         context=context, temperature=temperature)
    per_sequence[video.name] = davis_metrics.evaluate_semisupervised(
        video.masks, pred)
    if out_dir:
      for t, ids in enumerate(pred):
        visualize.save_label_png(
            os.path.join(out_dir, video.name, f"{t:05d}.png"), ids)
      shown = np.unique(np.linspace(0, len(pred) - 1, overlay_frames)
                        .round().astype(int))
      visualize.save_overlay_strip(
          os.path.join(out_dir, "overlays", f"{video.name}.png"),
          video.frames, pred, shown)
    elapsed = time.time() - start
    log(f"  eval [{i + 1}/{len(videos)}] {video.name}: "
        f"{len(pred)} frames, {elapsed:.1f}s elapsed")
  return davis_metrics.summarize(per_sequence)
