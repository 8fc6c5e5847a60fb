r"""Space-time clustering of a real video into Mask-VOS pseudo masks.

A pipeline check on DAVIS frames: per stride-8 cell, a colour feature (mean
and standard deviation of RGB in [0, 1], centred, L2-normalised) stands in
for E's key (no trained encoder is needed), plus the 3D position encoding;
k-means (M = 5, 100 EM steps), clusters over 40% of the pixels dropped;
pseudo masks written as palette PNGs and a Fig. S1-style picture (frames /
all clusters / kept pseudo masks).

  python benchmarks/pseudo_mask_demo.py \
      --root=$CORRJAX_DATA/davis2016/JPEGImages/480p --video=blackswan \
      --out=/tmp/pseudo_demo
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cell_features(frames: np.ndarray, stride: int = 8) -> np.ndarray:
  """uint8 [T, H, W, 3] -> float32 [T, H/8, W/8, 6] unit colour stats."""
  t, h, w, _ = frames.shape
  x = frames[:, :h // stride * stride, :w // stride * stride] / 255.0
  x = x.reshape(t, h // stride, stride, w // stride, stride, 3)
  f = np.concatenate([x.mean(axis=(2, 4)) - 0.5, x.std(axis=(2, 4))], -1)
  return (f / np.linalg.norm(f, axis=-1, keepdims=True).clip(1e-6)).astype(
      np.float32)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True)
  parser.add_argument("--video", default="blackswan")
  parser.add_argument("--out", required=True)
  parser.add_argument("--frames", type=int, default=30)
  parser.add_argument("--size", type=int, default=256,
                      help="frames are resized to this height")
  parser.add_argument("--pe_dim", type=int, default=48)
  parser.add_argument("--pe_scale", type=float, default=1.0)
  args = parser.parse_args(argv)
  sys.path.insert(0, REPO)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from corrjax.data import pseudo_masks  # pylint: disable=g-import-not-at-top
  from corrjax.ops import kmeans  # pylint: disable=g-import-not-at-top

  paths = sorted(glob.glob(os.path.join(args.root, args.video, "*.jpg")))
  paths = paths[:args.frames]
  frames = []
  for p in paths:
    im = Image.open(p).convert("RGB")
    w = round(im.width * args.size / im.height / 8) * 8
    frames.append(np.asarray(im.resize((w, args.size), Image.BILINEAR)))
  frames = np.stack(frames)
  feats = cell_features(frames)
  x = kmeans.with_position_encoding(jnp.asarray(feats), args.pe_dim,
                                    scale=args.pe_scale)
  t, h, w = x.shape[:3]
  out = kmeans.kmeans(jax.random.key(0), x.reshape(1, t * h * w, -1),
                      num_clusters=5, num_steps=100)
  clusters = np.asarray(out["labels"]).reshape(t, h, w)
  objects, kept = kmeans.pseudo_labels(jnp.asarray(clusters)[None], 5)
  objects = np.asarray(objects[0])
  pseudo_masks.write_pseudo_masks(os.path.join(args.out, "masks"),
                                  args.video, objects, size=(8 * h, 8 * w))
  grid = os.path.join(args.out, f"{args.video}_grid.png")
  pseudo_masks.save_cluster_grid(
      grid, frames[:, :8 * h, :8 * w], clusters, objects,
      np.linspace(0, t - 1, 5).round().astype(int))
  sizes = np.bincount(clusters.ravel(), minlength=5) / clusters.size
  print(json.dumps({"video": args.video, "frames": t, "grid": [h, w],
                    "cluster_fractions": sizes.round(3).tolist(),
                    "kept": np.asarray(kept[0]).tolist(),
                    "em_steps": int(out["steps"][0]), "picture": grid}))


if __name__ == "__main__":
  main()
