r"""Mask-VOS speed: train step time (both phases) and inference frames/s.

Train step: the jitted step exactly as `corrjax.train` builds it
(`create_state`, `make_train_step`) on one random batch already on device
(no input pipeline), for the correspondence-only phase (seg weight 0: E
only) and the full loss (Eq. 16: E, V on N references x O objects, D);
compile time, then median [min-max] of `--steps` steps after one warm-up.

Inference: Alg. 1 (models/mask_vos_inference.segment_video) on one random
video of `--frames` frames at `--height` x `--width` with `--objects`
objects, context 20, for each R of `--rounds`; a first (compiling) video
is not timed; frames/s = (T - 1) / seconds of a second run.

  python benchmarks/mask_vos_speed.py --config_arg=davis2016
  python benchmarks/mask_vos_speed.py   # paper sizes (slow on CPU)
"""

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from corrjax import config_defaults  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import optim  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.methods import mask_vos  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.models import mask_vos_inference  # pylint: disable=g-import-not-at-top,wrong-import-position


def _batch(config, rng):
  d = config.data
  b, s, n, o = d.batch_size, d.crop_size, d.num_refs + 1, d.num_objects
  frames = lambda t: rng.integers(0, 256, (b, t, s, s, 3), np.uint8)  # pylint: disable=g-long-lambda
  return {"seg_frames": frames(n),
          "seg_masks": rng.integers(0, o + 1, (b, n, s, s)).astype(np.int32),
          "object_valid": np.ones((b, o), bool),
          "short_frames": frames(2), "long_frames": frames(2)}


def time_step(config, seg_weight, steps):
  config.loss.seg_weight = seg_weight
  mesh = sharding.make_mesh((-1,), ("data",), jax.devices()[:1])
  model = mask_vos.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state, state_sh = train.create_state(config, mesh, model, tx)
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  batch = sharding.shard_host_batch(_batch(config, np.random.default_rng(0)),
                                    sharding.batch_sharding(mesh))
  t0 = time.time()
  compiled = step.lower(state, batch).compile()
  compile_s = time.time() - t0
  state, m = compiled(state, batch)
  jax.block_until_ready(m)
  times = []
  for _ in range(steps):
    t0 = time.time()
    state, m = compiled(state, batch)
    jax.block_until_ready(m)
    times.append(time.time() - t0)
  return {"phase": "full" if seg_weight else "corr", "compile_s": compile_s,
          "step_ms_median": 1e3 * statistics.median(times),
          "step_ms_min": 1e3 * min(times), "step_ms_max": 1e3 * max(times)}


def time_inference(config, args, rounds):
  model = mask_vos.build_model(config)
  tree = mask_vos.initial_tree(config)
  variables = mask_vos.encoder_variables(tree)
  rng = np.random.default_rng(0)
  frames = rng.standard_normal(
      (args.frames, args.height, args.width, 3)).astype(np.float32)
  first = rng.integers(0, args.objects + 1, (args.height, args.width))
  run = lambda: mask_vos_inference.segment_video(  # pylint: disable=g-long-lambda
      model, variables, frames, first, args.objects, context=20,
      rounds=rounds)
  run()
  t0 = time.time()
  run()
  seconds = time.time() - t0
  return {"rounds": rounds, "frames_per_s": (args.frames - 1) / seconds}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config_arg", default="", help="e.g. davis2016, smoke")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--frames", type=int, default=10)
  p.add_argument("--height", type=int, default=240)
  p.add_argument("--width", type=int, default=432)
  p.add_argument("--objects", type=int, default=1)
  p.add_argument("--rounds", default="0,2")
  p.add_argument("--skip_train", action="store_true")
  args = p.parse_args()
  spec = os.path.join(REPO, "configs/mask_vos.py")
  config = config_defaults.load(
      spec + (f":{args.config_arg}" if args.config_arg else ""))
  load = os.getloadavg()[0]
  if not args.skip_train:
    for w in (0.0, 1.0):
      print(json.dumps({"load": load, **time_step(config, w, args.steps)}),
            flush=True)
  for r in (int(x) for x in args.rounds.split(",")):
    print(json.dumps({"load": os.getloadavg()[0], "size": [args.height,
                      args.width], **time_inference(config, args, r)}),
          flush=True)


if __name__ == "__main__":
  main()
