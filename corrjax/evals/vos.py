"""Video object segmentation by label propagation: predictions and J&F.

For each video: features of every frame, frame 0's ground truth as soft
one-hot labels at feature resolution, `label_propagation.propagate`, then
bilinear upsampling and argmax; J and F per object and frame (DAVIS
semi-supervised protocol), palette PNGs `<out>/<video>/%05d.png` and an
overlay strip `<out>/overlays/<video>.png`.

An interrupted evaluation loses nothing: each finished video gets
`<out>/complete/<video>.json` (outside the DAVIS results layout) holding the protocol and a fingerprint of the
network (a hash of its features of the first frame); a rerun with the same
protocol and network reads those PNGs back instead of propagating again.
"""

from collections.abc import Callable, Iterable
import dataclasses
import hashlib
import json
import os
import time

import numpy as np
from PIL import Image

from corrjax import progress
from corrjax.evals import davis_metrics
from corrjax.evals import label_propagation
from corrjax.evals import labels as labels_lib
from corrjax.evals import visualize
from corrjax.evals import window_propagation


@dataclasses.dataclass(frozen=True)
class Video:
  """name; frames uint8 [T, H, W, 3]; masks int [T, H, W] ids (0 = bg)."""
  name: str
  frames: np.ndarray
  masks: np.ndarray


def predict_video(video: Video, feature_fn: Callable[[np.ndarray], np.ndarray],
                  *, topk: int, radius: float, context: int,
                  temperature: float, crop_size: int = -1,
                  resize_back: Callable[[np.ndarray, int, int], np.ndarray] =
                  labels_lib.resize_nearest, stride: int = 8,
                  log: Callable[[str], None] | None = None) -> np.ndarray:
  """Propagates frame 0's mask through the video.

  Args:
    video: frames and masks (only masks[0] is read).
    feature_fn: frames uint8 [T, H, W, 3] or float in [0, 1] -> float
      [T, ceil(H / stride), ceil(W / stride), C] L2-normalised features.
    topk, radius, context, temperature: the propagation protocol.
    crop_size: -1 for native resolution (DAVIS); > 0 resizes frames to a
      crop_size x crop_size square ignoring the aspect ratio, as the
      reference's `--cropSize` (videowalk `code/data/vos.py:186-202`:
      cv2 INTER_LINEAR on float frames); the first mask is resized with
      nearest neighbours and predictions are brought back to the frame size
      with nearest neighbours (`code/eval/convert_davis.py`).
    stride: feature stride.
    log: if given, gets one line of per-stage speeds (frames/s).

  Returns:
    int32 [T, H, W] predicted ids; frame 0 is the ground truth's.
  """
  t = len(video.masks)
  frames, first = labels_lib.frames_and_first_mask(video, crop_size)
  num_classes = int(video.masks[0].max()) + 1
  size = frames.shape[1:3]
  start = time.time()
  feats = feature_fn(frames)
  extracted = time.time()
  labels_lib.check_feature_grid(video.name, feats, size, stride)
  labels0 = labels_lib.downsample_labels(first, num_classes, stride)
  soft = np.asarray(label_propagation.propagate(
      feats, labels0, topk=topk, radius=radius, context=context,
      temperature=temperature))
  preds = [labels_lib.upsample_argmax(s, *size) for s in soft[1:]]
  if log is not None:
    log(labels_lib.speed_line(video.name, t, size, extracted - start,
                              time.time() - extracted))
  return labels_lib.with_first_mask(video, preds, crop_size, resize_back)


def _marker_path(out_dir: str, name: str) -> str:
  """Where a finished video's protocol and network fingerprint go."""
  return os.path.join(out_dir, "complete", f"{name}.json")


def _fingerprint(network, video: Video, protocol) -> str:
  """sha1 of what makes the predictions: the mask predictor's masks of the
  first two frames when the network has one (its decoder can change while
  its features do not), else the features of the first frame."""
  if network.predict_masks is not None:
    out = network.predict_masks(video.frames[:2], video.masks[0], protocol)
  else:
    out = network.features(video.frames[:1])
  out = np.ascontiguousarray(out, dtype=np.float32)
  return hashlib.sha1(out.tobytes()).hexdigest()


def _saved_prediction(out_dir: str, video: Video,
                      marker: dict) -> np.ndarray | None:
  """int32 [T, H, W] ids an earlier run wrote with `marker`, else None."""
  path = _marker_path(out_dir, video.name)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    if json.load(f) != marker:
      return None
  paths = [os.path.join(out_dir, video.name, f"{t:05d}.png")
           for t in range(len(video.frames))]
  if not all(os.path.isfile(p) for p in paths):
    return None
  pred = np.stack([np.asarray(Image.open(p), np.int32) for p in paths])
  return pred if pred.shape == video.masks.shape else None


def predict(network, video: Video, protocol, log=None) -> np.ndarray:
  """int32 [T, H, W]: the network's own predictor, else label propagation
  (`protocol.kind` 'crw': `predict_video`; 'liir':
  window_propagation.predict_video on the raw features)."""
  if network.predict_masks is not None:
    pred = np.asarray(network.predict_masks(video.frames, video.masks[0],
                                            protocol), np.int32)
    if pred.shape != video.masks.shape:
      raise ValueError(f"{video.name}: the predictor returned "
                       f"{pred.shape}, expected {video.masks.shape}.")
    return pred
  if network.features is None:
    raise ValueError(f"network {network.label!r} has neither features nor "
                     "a mask predictor.")
  if protocol.kind == "liir":
    return window_propagation.predict_video(
        video, network.raw_features or network.features,
        window=protocol.window, compact_threshold=protocol.compact_threshold,
        foreground_boost=protocol.foreground_boost,
        crop_size=protocol.crop_size, stride=network.stride, log=log)
  return predict_video(video, network.features, stride=network.stride,
                       log=log, **protocol.as_dict())


def evaluate(videos: Iterable[Video], network, protocol, *,
             out_dir: str | None = None, overlay_frames: int = 4,
             log: Callable[[str], None] = print) -> dict:
  """Predicts, scores and (optionally) writes PNGs and overlays per video.

  Args:
    videos: the benchmark's videos.
    network: an evals.network.Network.
    protocol: an evals.protocol.Propagation.
    out_dir: where the DAVIS results layout, overlays and resume markers go
      (None: nothing written).
    overlay_frames: frames shown per overlay picture.
    log: progress lines.

  Returns:
    davis_metrics.summarize(...) of all videos: global J&F, J, F statistics
    and per-object rows, plus "overlays": paths of the overlay pictures.
  """
  per_sequence, overlays = {}, []
  videos = list(videos)
  marker = None
  if out_dir and videos:
    marker = dict(protocol.as_dict(),
                  network=_fingerprint(network, videos[0], protocol))
  bar = progress.Progress(sum(len(v.frames) for v in videos), "frames",
                          log=log)
  for i, video in enumerate(videos):
    pred = _saved_prediction(out_dir, video, marker) if out_dir else None
    reused = pred is not None
    if not reused:
      pred = predict(network, video, protocol, log=log)
    per_sequence[video.name] = davis_metrics.evaluate_semisupervised(
        video.masks, pred)
    if out_dir:
      overlay_path = os.path.join(out_dir, "overlays", f"{video.name}.png")
      overlays.append(overlay_path)
    if out_dir and not reused:
      for t, ids in enumerate(pred):
        visualize.save_label_png(
            os.path.join(out_dir, video.name, f"{t:05d}.png"), ids)
      shown = np.unique(np.linspace(0, len(pred) - 1, overlay_frames)
                        .round().astype(int))
      visualize.save_overlay_strip(overlay_path, video.frames, pred, shown,
                                   truth=video.masks)
      os.makedirs(os.path.dirname(_marker_path(out_dir, video.name)),
                  exist_ok=True)
      with open(_marker_path(out_dir, video.name), "w") as f:
        json.dump(marker, f)
    scores = per_sequence[video.name]
    bar.advance(len(video.frames),
                f"[{i + 1}/{len(videos)}] {video.name}: "
                f"J {np.mean(scores['J']):.3f} F {np.mean(scores['F']):.3f}"
                f"{' (saved predictions)' if reused else ''}")
  summary = davis_metrics.summarize(per_sequence)
  summary["overlays"] = overlays
  return summary
