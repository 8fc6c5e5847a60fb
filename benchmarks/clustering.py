r"""Time per video of Mask-VOS space-time k-means: ours vs sklearn KMeans.

Ours: `corrjax.ops.kmeans.kmeans` (jit, vmap over a batch of videos,
k-means++ seeding, up to `--steps` Lloyd steps, float32). Reference:
`sklearn.cluster.KMeans(M, n_init=1, max_iter=steps)` with its defaults
(k-means++ seeding, tol 1e-4, Lloyd), fitted video by video.

Inputs: per video, T frames of h x w cells of 128-d L2-normalised "keys"
(6 moving square objects on a background, each with its own random unit
embedding, plus Gaussian noise, re-normalised) concatenated with the 48-d
3D position encoding (`kmeans.with_position_encoding`), 176 dims in all.
Both sides cluster the same float32 arrays. Ours is timed after a warm-up
call on the same shapes (compile excluded). Measurements are interleaved,
ours then sklearn, `--pairs` times; the report gives the median and range
of the per-video time, the per-pair speed-up (sklearn / ours within a
pair), the 1-minute load average before each pair, and the mean inertia
and EM step count of both (a check that the clusterings are comparable).

  nice python benchmarks/clustering.py --frames=30,100 --videos=4 --pairs=3
"""

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_video(rng, frames, h, w, dim=128, objects=6, noise=0.5):
  """float32 [T, h, w, dim]: noisy L2-normalised keys of moving squares."""
  codes = rng.normal(size=(objects + 1, dim))
  ids = np.zeros((frames, h, w), np.int64)
  yy, xx = np.mgrid[:h, :w]
  for o in range(1, objects + 1):
    size = rng.integers(h // 6, h // 3)
    y0, x0 = rng.uniform(0, h - size), rng.uniform(0, w - size)
    vy, vx = rng.uniform(-0.5, 0.5, size=2)
    for t in range(frames):
      y, x = (y0 + vy * t) % (h - size), (x0 + vx * t) % (w - size)
      ids[t][(yy >= y) & (yy < y + size) & (xx >= x) & (xx < x + size)] = o
  feats = codes[ids] + noise * rng.normal(size=(frames, h, w, dim))
  feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
  return feats.astype(np.float32)


def make_inputs(rng, videos, frames, cells, pe_dim):
  """float32 [videos, frames * cells * cells, 128 + pe_dim]: `videos` of
  `make_video`'s keys with the 3D position encoding, pixels flattened, as
  `kmeans.kmeans` takes a batch of videos."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from corrjax.ops import kmeans  # pylint: disable=g-import-not-at-top
  x = kmeans.with_position_encoding(jnp.asarray(np.stack(
      [make_video(rng, frames, cells, cells) for _ in range(videos)])),
                                    pe_dim)
  return jnp.reshape(x, (videos, -1, x.shape[-1]))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--frames", default="30,100")
  parser.add_argument("--cells", type=int, default=32)
  parser.add_argument("--pe_dim", type=int, default=48)
  parser.add_argument("--clusters", type=int, default=5)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--videos", type=int, default=4,
                      help="videos per batched call of ours")
  parser.add_argument("--pairs", type=int, default=3)
  args = parser.parse_args(argv)
  sys.path.insert(0, REPO)
  import jax  # pylint: disable=g-import-not-at-top
  from sklearn import cluster  # pylint: disable=g-import-not-at-top
  from corrjax.ops import kmeans  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for frames in [int(f) for f in args.frames.split(",")]:
    x = make_inputs(rng, args.videos, frames, args.cells, args.pe_dim)
    x_np = np.asarray(x)

    def ours(seed):
      out = kmeans.kmeans(jax.random.key(seed), x,
                          num_clusters=args.clusters, num_steps=args.steps)
      jax.block_until_ready(out)
      return out

    ours(0)  # Compile.
    times = {"ours": [], "sklearn": []}
    inertia = {"ours": [], "sklearn": []}
    steps = {"ours": [], "sklearn": []}
    loads = []
    for p in range(args.pairs):
      loads.append(os.getloadavg()[0])
      t0 = time.perf_counter()
      out = ours(p + 1)
      times["ours"].append((time.perf_counter() - t0) / args.videos)
      inertia["ours"] += np.asarray(out["inertia"]).tolist()
      steps["ours"] += np.asarray(out["steps"]).tolist()
      t0 = time.perf_counter()
      for v in range(args.videos):
        km = cluster.KMeans(args.clusters, n_init=1, max_iter=args.steps,
                            random_state=p).fit(x_np[v])
        inertia["sklearn"].append(float(km.inertia_))
        steps["sklearn"].append(int(km.n_iter_))
      times["sklearn"].append((time.perf_counter() - t0) / args.videos)
    report = {"frames": frames, "cells": args.cells,
              "dims": int(x.shape[-1]), "videos_per_call": args.videos,
              "pairs": args.pairs, "load_avg_1min": loads,
              "cpu_count": os.cpu_count(), "jax": jax.__version__}
    for name in times:
      t = np.array(times[name])
      report[name] = {"median_s": float(np.median(t)),
                      "min_s": float(t.min()), "max_s": float(t.max()),
                      "mean_inertia": float(np.mean(inertia[name])),
                      "mean_steps": float(np.mean(steps[name]))}
    report["speedup_median"] = (report["sklearn"]["median_s"] /
                                report["ours"]["median_s"])
    # Within each interleaved pair both ran under about the same load.
    pair = np.array(times["sklearn"]) / np.array(times["ours"])
    report["speedup_per_pair"] = {"median": float(np.median(pair)),
                                  "min": float(pair.min()),
                                  "max": float(pair.max())}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
  main()
