r"""Step time of LIIR's train step: ours (JAX) vs a torch transcription.

Ours: methods/liir.py's step (L4 + 0.5 L8 + L_compact, Adam, EMA head,
enqueue), jitted, on one fixed random batch already on device, with the
queue already active (every entry from another video). Torch: the
transcription the parity tests use (tests/convert_liir_test.py `MAST`,
tests/losses/liir_test.py losses; LIIR_pytorch's structure: one
correlation call per negative, `colorizer_momen.py:153-160`), forward +
backward + Adam, float32, same sizes. The correlation here is unfold-based,
not spatial-correlation-sampler's kernel, so the torch time is indicative.

  python benchmarks/liir_step.py --batch_size=2 --image_size=64 --width=8 \
      --queue=8 --steps=3 --warmup=1 --torch
  python benchmarks/liir_step.py   # reference sizes: b12, 256 px, 960
"""

import argparse
import importlib.util
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from corrjax import optim
from corrjax.methods import liir as liir_method


def _load(path):
  spec = importlib.util.spec_from_file_location(
      os.path.basename(path)[:-3], os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch_size", type=int, default=12)
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--queue", type=int, default=960)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--torch", action="store_true")
  return p.parse_args()


def _batch(b, s, seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)
  return {"reference": f(b, s, s, 3), "target": f(b, s, s, 3),
          "reference_label": f(b, s, s, 1) / 2,
          "target_label": f(b, s, s, 1) / 2,
          "video_id": np.arange(b, dtype=np.int32)}


def _timed(run, warmup, steps):
  for _ in range(warmup):
    run()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def bench_ours(a, batch):
  config = _load("configs/liir.py").get_config()
  w = a.width
  config.model.update(width=w, widths=(w, 2 * w, 4 * w, 4 * w),
                      pe_size=(a.image_size // 2,) * 2)
  config.data.update(size=a.image_size, batch_size=a.batch_size)
  config.liir.queue_size = a.queue
  model = liir_method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state = jax.jit(lambda r: liir_method.init_state(
      r, model=model, tx=tx, config=config))(jax.random.key(0))
  queue = dict(state.extra["queue"])
  queue["ids"] = jnp.full_like(queue["ids"], 10_000)  # Other videos.
  queue["count"] = jnp.asarray(10_000, jnp.int32)  # Active.
  state = state.replace(extra={**state.extra, "queue": queue})
  step = jax.jit(liir_method.bind_train_step(config, model=model, tx=tx,
                                             schedule=schedule))
  batch = jax.device_put(batch)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics["loss"])

  return compile_s, _timed(run, a.warmup, a.steps)


def bench_torch(a, batch):
  import torch  # pylint: disable=import-outside-toplevel
  ref_model = _load("tests/convert_liir_test.py")
  ref = _load("tests/losses/liir_test.py")
  torch.set_num_threads(os.cpu_count())
  s, h8 = a.image_size, a.image_size // 8
  mast = ref_model.MAST(width=a.width, pe_size=s // 2, match_dim=64,
                        semantic_dim=128).train()
  opt = torch.optim.Adam([p for n, p in mast.named_parameters()
                          if not n.startswith("conv_semantic_k")])
  t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  ref_x, tgt_x = t(batch["reference"]), t(batch["target"])
  ref_y, tgt_y = t(batch["reference_label"]), t(batch["target_label"])
  queue = torch.randn(a.queue, 128, h8, h8)
  queue_ids = [10_000] * a.queue
  refs = list(batch["video_id"])

  def run():
    with torch.no_grad():
      for q, k in zip(mast.conv_semantic.parameters(),
                      mast.conv_semantic_k.parameters()):
        k.data = k.data * 0.999 + q.data * 0.001
    tep_t = mast.feature_extraction(tgt_x)
    tep_r = mast.feature_extraction(ref_x)
    f_t, f_r = mast.post_convolution(tep_t), mast.post_convolution(tep_r)
    sem_t = mast.conv_semantic(tep_t)
    with torch.no_grad():
      sem_r = mast.conv_semantic_k(tep_r)
    loss4, corr = ref.torch_intra(f_t, f_r, ref_y, tgt_y)
    loss8, _ = ref.torch_inter(sem_t, sem_r, queue, queue_ids, refs, ref_y,
                               tgt_y)
    h4 = f_t.shape[2]
    loss = loss4 + 0.5 * loss8 + ref.torch_compact(corr, 1, 13, h4, h4)
    loss.backward()
    opt.step()
    opt.zero_grad()
    queue[:len(refs)] = sem_r.detach()

  return _timed(run, a.warmup, a.steps)


def main():
  a = _args()
  batch = _batch(a.batch_size, a.image_size)
  print(f"LIIR step: batch {a.batch_size}, {a.image_size} px, width "
        f"{a.width}, queue {a.queue}; device {jax.devices()[0].device_kind}")
  compile_s, ours = bench_ours(a, batch)
  print(f"ours:  compile {compile_s:.1f} s, median step {ours * 1e3:.1f} ms")
  if a.torch:
    theirs = bench_torch(a, batch)
    print(f"torch: median step {theirs * 1e3:.1f} ms "
          f"(torch / ours = {theirs / ours:.2f})")


if __name__ == "__main__":
  main()
