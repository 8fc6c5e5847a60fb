r"""LIIR_pytorch's own evaluator vs corrjax's window propagation, same features.

Does corrjax reproduce LIIR's inference protocol, or only our reading of
it? Both run on the same features: those of the random-init FC ResNet-18
(configs/random_init.py, layer3, stride 8, L2-normalised) times each
`--scales` value s, as benchmarks/window_protocol_scale.py makes them.

Reference (`--reference_dir`, a checkout of shasha521/LIIR_pytorch@21c7ba5;
none of its code is copied here): its own `evaluate_davis.test` loop
(`evaluate_davis.py:67-171`: reference frames, padding, bilinear upsampling,
argmax, PNG output) drives its own `Colorizer` eval forward
(`models/colorizer_momen.py:100-207`, `--compact`, R = 14, C = 7 as
`models/mast_momen.py:15,29,33` build it), called as `MAST.forward` calls it
(`mast_momen.py:131-132`) but with our features in place of its network's
(`FeatureModel` below). It needs spatial_correlation_sampler built for CPU
and the pip packages its modules import (scikit-image):
`--reference_path` puts their folders on sys.path (docs/liir_reference.md
says how they were built). Runtime shims, no code changes: `Tensor.cuda` is
the identity (the loop and `make_gaussian`, `colorizer_momen.py:35-36`,
call it), and the Colorizer's D is our stride (8, not its network's 4),
as is the loop's padding multiple (`evaluate_davis.py:24`).

Ours: corrjax.evals.window_propagation.propagate on the same features, as
its `predict_video` calls it.

Per video and scale it prints: predicted frames whose masks are identical
(on the crop_size square, where both protocols work) / T - 1, the max
|soft-label difference| over all frames (ours vs the Colorizer's output
channels 0..K-1; channels K..6 must be 0), and J&F of both, each scored by
corrjax.evals.davis_metrics after the same nearest resize back to 480p,
so only the masks differ.

Torch flushes denormals only when told (`--flush_denormal`, default on,
with one torch thread: the flag is per thread); XLA on CPU flushes them.

  PYTHONPATH=. python benchmarks/liir_reference_eval.py \
      --reference_dir=/tmp/liir_ref \
      --reference_path=/tmp/corr_ext/Correlation_Module:/tmp/refdeps \
      --videos=car-shadow --scales=10,100
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from PIL import Image

from corrjax import config_defaults
from corrjax import networks
from corrjax.evals import davis_data
from corrjax.evals import davis_metrics
from corrjax.evals import labels as labels_lib
from corrjax.evals import window_propagation

REFERENCE_CLASSES = 7  # MAST's C (`mast_momen.py:15`).
WINDOW = 14  # MAST's eval R (`mast_momen.py:29`).


def load_reference(reference_dir: str, extra_path: str):
  """Imports LIIR_pytorch's `evaluate_davis` and `models.colorizer_momen`.

  Args:
    reference_dir: checkout of shasha521/LIIR_pytorch.
    extra_path: ':'-separated folders put first on sys.path (the built
      spatial_correlation_sampler, pip --target deps).

  torchvision is an empty stub module: only `DavisLoaderLab.py:5`, which
  this script does not use, imports it (its PyPI wheel is built against
  CUDA torch and does not load next to a CPU-only torch).

  Returns:
    (evaluate_davis module, Davis2017 module, colorizer_momen module).
  """
  for path in reversed([reference_dir] + [p for p in extra_path.split(":")
                                          if p]):
    sys.path.insert(0, path)
  for name in ("torchvision", "torchvision.transforms"):
    sys.modules.setdefault(name, types.ModuleType(name))
  import evaluate_davis  # pylint: disable=import-outside-toplevel
  from functional.feeder.dataset import Davis2017  # pylint: disable=import-outside-toplevel
  from models import colorizer_momen  # pylint: disable=import-outside-toplevel
  return evaluate_davis, Davis2017, colorizer_momen


@contextlib.contextmanager
def cuda_is_identity(torch):
  """`Tensor.cuda` returns the tensor: the reference calls it throughout
  (`evaluate_davis.py:81-82`, `colorizer_momen.py:35-36`)."""
  saved = torch.Tensor.cuda
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  try:
    yield
  finally:
    torch.Tensor.cuda = saved


def feature_model(torch, colorizer_momen, feats: np.ndarray, stride: int):
  """An nn.Module with MAST's eval signature whose 'network' is `feats`.

  Args:
    torch: the torch module.
    colorizer_momen: LIIR_pytorch's `models/colorizer_momen.py`.
    feats: float32 [T, h, w, C] features of the whole (padded) video.
    stride: pixels per cell: the Colorizer's D.

  Returns:
    module(rgb_r, quantized_r, rgb_t, ref_index, current_ind) -> the
    Colorizer's float [1, 7, h, w] output, as `mast_momen.py:110-134`
    returns it in eval mode; each output is also kept in `.outputs`.
  """
  nchw = torch.from_numpy(np.ascontiguousarray(feats.transpose(0, 3, 1, 2)))

  class FeatureModel(torch.nn.Module):
    """`MAST` (`mast_momen.py:9-134`) with `feats` for its network."""

    def __init__(self):
      super().__init__()
      # `mast_momen.py:33` with evaluate_davis.py:20-25's args (bsize 12,
      # factor 1, training False) and --compact.
      self.colorizer = colorizer_momen.Colorizer(
          stride, WINDOW, REFERENCE_CLASSES, 12, 1, False, True)
      self.outputs = []

    def forward(self, rgb_r, quantized_r, rgb_t, ref_index, current_ind):
      del rgb_r, rgb_t  # Features come from `feats`, indexed by frame.
      feats_r = [nchw[k:k + 1] for k in ref_index]
      feats_t = nchw[current_ind:current_ind + 1]
      # The semantic head's correlation does not reach the eval output
      # (`colorizer_momen.py:135-171`); any stride-2 map of the right rank.
      out, _, _, _ = self.colorizer(
          feats_r, feats_t, quantized_r, ref_index, current_ind, None,
          [f[:, :, ::2, ::2] for f in feats_r], feats_t[:, :, ::2, ::2])
      self.outputs.append(out.numpy().copy())
      return out

  return FeatureModel()


def reference_predict(modules, name: str, frames: np.ndarray,
                      masks: np.ndarray, feats: np.ndarray, stride: int,
                      out_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """Runs `evaluate_davis.test` on one video with `feats` as the network.

  Args:
    modules: `load_reference`'s output.
    name: video name (its PNG folder).
    frames: uint8 [T, H, W, 3] (only their shape matters).
    masks: int [T, H, W] ground truth on the same grid (frame 0 is
      propagated; the others feed the loop's own J/F log line).
    feats: float32 [T, h, w, C] on the padded stride grid.
    stride: pixels per cell.
    out_dir: where the loop writes its PNGs.

  Returns:
    (int32 [T - 1, H, W] masks of frames 1.. read back from its PNGs,
    float32 [T - 1, h, w, 7] its soft outputs).
  """
  import torch  # pylint: disable=import-outside-toplevel
  evaluate_davis, davis2017, colorizer_momen = modules
  evaluate_davis.args = argparse.Namespace(
      ref=0, savepath=out_dir, pad_divisible=stride)
  davis2017.catnames = [name]
  os.makedirs(out_dir, exist_ok=True)  # As `evaluate_davis.py:32-33`.
  images = [torch.from_numpy(f.transpose(2, 0, 1)[None].astype(np.float32))
            for f in frames]
  annotations = [torch.from_numpy(m[None, None].astype(np.int64))
                 for m in masks]
  model = feature_model(torch, colorizer_momen, feats, stride)
  log = _QuietLog()
  with cuda_is_identity(torch):
    evaluate_davis.test([(images, annotations)], model, log)
  folder = os.path.join(out_dir, "benchmark", name)
  preds = np.stack([np.asarray(Image.open(os.path.join(folder, f"{t:05d}.png")))
                    for t in range(1, len(frames))]).astype(np.int32)
  soft = np.concatenate(model.outputs).transpose(0, 2, 3, 1)
  return preds, soft


class _QuietLog:
  """The logger `evaluate_davis.test` writes to; keeps its lines."""

  def __init__(self):
    self.lines = []

  def info(self, line):
    self.lines.append(line)


def ours_predict(first: np.ndarray, feats: np.ndarray, stride: int,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """window_propagation.propagate as `predict_video` calls it.

  Args:
    first: int [H, W] frame 0's ids on the crop grid.
    feats: float32 [T, h, w, C] on the padded stride grid.
    stride: pixels per cell.
    size: (H, W).

  Returns:
    (int32 [T - 1, H, W] masks of frames 1.., float32 [T - 1, h, w, K]).
  """
  h, w = feats.shape[1:3]
  padded = np.zeros((h * stride, w * stride), np.int32)
  padded[:size[0], :size[1]] = first
  soft, maps = window_propagation.propagate(
      feats, padded, int(first.max()) + 1, window=WINDOW, stride=stride)
  return maps[1:, :size[0], :size[1]], soft


def jf(video, preds: np.ndarray, crop_size: int) -> float:
  """J&F-Mean of masks [T - 1, H', W'] on the crop grid, scored at the
  video's size by davis_metrics as vos.evaluate scores them."""
  full = labels_lib.with_first_mask(video, list(preds), crop_size,
                                    labels_lib.resize_nearest)
  scores = davis_metrics.evaluate_semisupervised(video.masks, full)
  return davis_metrics.summarize({video.name: scores})["global"]["J&F-Mean"]


def compare(video, feats1: np.ndarray, scale: float, stride: int,
            crop_size: int, modules, out_dir: str) -> dict:
  """One video at one scale: both protocols, then the comparison row."""
  frames, first = labels_lib.frames_and_first_mask(video, crop_size)
  masks = video.masks
  if crop_size > 0:
    masks = np.stack([labels_lib.resize_nearest(m, crop_size, crop_size)
                      for m in masks])
  feats = (feats1 * scale).astype(np.float32)
  start = time.time()
  ours, ours_soft = ours_predict(first, feats, stride, frames.shape[1:3])
  ours_s = time.time() - start
  start = time.time()
  ref, ref_soft = reference_predict(modules, video.name, frames, masks, feats,
                                    stride, out_dir)
  ref_s = time.time() - start
  k = ours_soft.shape[-1]
  same = [bool(np.array_equal(a, b)) for a, b in zip(ours, ref)]
  return {
      "video": video.name, "scale": scale, "frames_identical": sum(same),
      "frames": len(same),
      "first_differing": same.index(False) + 1 if False in same else None,
      "max_abs_soft_diff": float(np.abs(ours_soft - ref_soft[..., :k]).max()),
      "max_abs_soft_extra_channels": float(np.abs(ref_soft[..., k:]).max()),
      "jf_ours": jf(video, ours, crop_size),
      "jf_reference": jf(video, ref, crop_size),
      "seconds_ours": ours_s, "seconds_reference": ref_s,
      "load_1min": os.getloadavg()[0]}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--davis_root", default=os.path.join(
      os.environ.get("CORRJAX_DATA", ""), "davis2016"))
  p.add_argument("--videos", default="car-shadow")
  p.add_argument("--scales", default="10,100")
  p.add_argument("--crop_size", type=int, default=256)
  p.add_argument("--reference_dir", required=True,
                 help="checkout of shasha521/LIIR_pytorch@21c7ba5")
  p.add_argument("--reference_path", default="",
                 help="':'-separated folders for sys.path: the built "
                 "spatial_correlation_sampler and the reference's pip deps")
  p.add_argument("--flush_denormal", type=int, default=1,
                 help="1: torch flushes denormals, on one thread (as XLA)")
  p.add_argument("--out", default="", help="append JSON lines here")
  args = p.parse_args()
  import torch  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if args.flush_denormal:
    torch.set_num_threads(1)  # The flag below is per thread.
    torch.set_flush_denormal(True)
  modules = load_reference(args.reference_dir, args.reference_path)
  config = config_defaults.load(os.path.join(REPO,
                                             "configs/random_init.py:davis"))
  net = networks.random_init(config)
  print(f"load {os.getloadavg()}, torch threads {torch.get_num_threads()}, "
        f"flush denormals {bool(args.flush_denormal)}", flush=True)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.videos.split(","):
      video = davis_data.read_video(args.davis_root, name)
      frames, _ = labels_lib.frames_and_first_mask(video, args.crop_size)
      feats1 = np.asarray(net.features(frames), np.float32)
      for scale in (float(s) for s in args.scales.split(",")):
        row = compare(video, feats1, scale, net.stride, args.crop_size,
                      modules, os.path.join(tmp, f"s{scale:g}"))
        rows.append(row)
        print(json.dumps(row), flush=True)
  print("| video | s | identical masks | max abs soft diff | J&F ours | "
        "J&F reference | load |\n|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['video']} | {r['scale']:g} | {r['frames_identical']}/"
          f"{r['frames']} | {r['max_abs_soft_diff']:.2g} | "
          f"{r['jf_ours']:.3f} | {r['jf_reference']:.3f} | "
          f"{r['load_1min']:.1f} |")
  if args.out:
    with open(args.out, "a") as f:
      for r in rows:
        f.write(json.dumps(dict(r, args=vars(args))) + "\n")


if __name__ == "__main__":
  main()
