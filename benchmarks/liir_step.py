r"""Step time of LIIR's train step: ours (JAX) vs torch (transcription, real).

Ours: methods/liir.py's step (L4 + 0.5 L8 + L_compact, Adam, EMA head,
enqueue), jitted, on one fixed random batch already on device, with the
queue already active (every entry from another video). Torch: the
transcription the parity tests use (tests/convert_liir_test.py `MAST`,
tests/losses/liir_test.py losses; LIIR_pytorch's structure: one
correlation call per negative, `colorizer_momen.py:153-160`), forward +
backward + Adam, float32, same sizes. The correlation here is unfold-based,
not spatial-correlation-sampler's kernel, so the torch time is indicative.

Reference (`--reference_dir`, a checkout of shasha521/LIIR_pytorch@21c7ba5;
none of its code is copied here): its own `MAST` (`models/mast_momen.py`,
`--usemomen --compact`: resnet18 with position embedding, heads, Colorizer
with spatial-correlation-sampler, momentum head, queue) and its own
`compute_lphoto` loss (`main_dis.py:215-248`), stepped as `train` steps it
(`main_dis.py:171-181`: `adjust_lr`, `dropout2d_lab`'s channel drop,
loss, backward, Adam of `:85`), CPU float32, on the same images. Only width 64 exists there
(`resnet.py:52`) and its position embedding is 128 x 128 (`resnet.py:63`),
so `--pe_size` defaults to 128 with `--reference_dir`. `--reference_path`
puts the built spatial_correlation_sampler on sys.path
(docs/liir_reference.md). Runtime shims, no code changes: `main_dis` is
imported with its own argv (`--usemomen --compact --bsize --factor`); its
unused tensorboard, matplotlib and torchvision imports are stubbed when
absent; `Tensor.cuda` is the identity (`make_gaussian`,
`colorizer_momen.py:35-36`, calls it); `concat_all_gather` (`mast_momen.py:137-148`) is the identity, as
at world size 1 (a process group would make SyncBatchNorm refuse CPU
tensors); the queue buffers are resized to the semantic grid (the
reference's are 32 x 32, for 256 px), filled with other videos' ids and
made active (flag > factor, `colorizer_momen.py:143`).

Timing: compile and `--warmup` steps of each first, then `--pairs`
interleaved rounds (ours, transcription, reference, ...), each timing
`--steps` steps; a round's time is its median step. Printed: each one's
median and range over the rounds, the per-round ratio to ours (median and
range) and the 1-minute load average of each round.

  python benchmarks/liir_step.py --batch_size=2 --image_size=64 --width=8 \
      --queue=8 --steps=3 --warmup=1 --torch
  python benchmarks/liir_step.py   # reference sizes: b12, 256 px, 960
  python benchmarks/liir_step.py --batch_size=2 --image_size=64 --width=64 \
      --queue=8 --steps=5 --warmup=2 --pairs=3 --torch \
      --reference_dir=/tmp/liir_ref \
      --reference_path=/tmp/corr_ext/Correlation_Module
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

import interleaved_rounds  # benchmarks/, beside this script.  # pylint: disable=g-import-not-at-top,wrong-import-position
import module_stubs  # benchmarks/module_stubs.py, beside this script.  # pylint: disable=g-import-not-at-top,wrong-import-position


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
  p.add_argument("--torch", action="store_true",
                 help="also time the torch transcription of the tests")
  p.add_argument("--reference_dir", default="",
                 help="also time LIIR_pytorch@21c7ba5's own model and loss")
  p.add_argument("--reference_path", default="",
                 help="':'-separated folders for sys.path (the built "
                 "spatial_correlation_sampler)")
  p.add_argument("--pe_size", type=int, default=0,
                 help="position embedding side, ours and transcription "
                 "(0: image_size // 2, or 128 with --reference_dir)")
  p.add_argument("--pairs", type=int, default=3,
                 help="interleaved timing rounds")
  a = p.parse_args()
  if not a.pe_size:
    a.pe_size = 128 if a.reference_dir else a.image_size // 2
  if a.reference_dir and a.width != 64:
    p.error("LIIR_pytorch's ResNet has width 64 only (resnet.py:52).")
  return a


def _batch(b, s, seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)
  return {"reference": f(b, s, s, 3), "target": f(b, s, s, 3),
          "reference_label": f(b, s, s, 1) / 2,
          "target_label": f(b, s, s, 1) / 2,
          "video_id": np.arange(b, dtype=np.int32)}


def bench_ours(a, batch):
  """(compile seconds, one-step fn) of methods/liir.py's jitted step."""
  config = _load("configs/liir.py").get_config()
  w = a.width
  config.model.update(width=w, widths=(w, 2 * w, 4 * w, 4 * w),
                      pe_size=(a.pe_size,) * 2)
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

  return compile_s, run


def bench_torch(a, batch):
  """One-step fn of the tests' torch transcription."""
  import torch  # pylint: disable=import-outside-toplevel
  ref_model = _load("tests/convert_liir_test.py")
  ref = _load("tests/losses/liir_test.py")
  torch.set_num_threads(os.cpu_count())
  h8 = a.image_size // 8
  mast = ref_model.MAST(width=a.width, pe_size=a.pe_size, match_dim=64,
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

  return run


def load_reference(a):
  """Imports LIIR_pytorch's `main_dis` and `models.mast_momen`.

  `main_dis` parses argv at import (`main_dis.py:22-60`): it gets its own.
  Module-level imports it does not need here (tensorboard, matplotlib,
  torchvision for its data loader) are stubbed when they do not import.
  """
  for path in reversed([a.reference_dir] + [p for p in
                                            a.reference_path.split(":") if p]):
    sys.path.insert(0, path)
  for name in ("torch.utils.tensorboard", "matplotlib", "matplotlib.pyplot",
               "torchvision", "torchvision.transforms"):
    try:
      __import__(name)
    except Exception:  # pylint: disable=broad-except
      sys.modules[name] = module_stubs.stub(name)
  argv = sys.argv
  sys.argv = ["main_dis.py", "--usemomen", "--compact",
              f"--bsize={a.batch_size}",
              f"--factor={a.queue // a.batch_size}"]
  try:
    import main_dis  # pylint: disable=import-outside-toplevel
  finally:
    sys.argv = argv
  from models import mast_momen  # pylint: disable=import-outside-toplevel
  return main_dis, mast_momen


def _drop_channel(images):
  """`main_dis.py:153-162` `dropout2d_lab`'s effect, which cannot run under
  numpy 2 (`int()` of a 1-element array, `:154`): one of channels 1, 2
  zeroed in every image, the rest scaled by 3 / 2. Returns its index [1]."""
  ch = np.random.choice(np.arange(1, 3), 1, replace=False)
  for x in images:
    x[:, ch] = 0
    x *= 1.5
  return ch


def bench_reference(a, batch):
  """One-step fn of LIIR_pytorch's own model, loss and Adam."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count())
  main_dis, mast_momen = load_reference(a)
  mast_momen.concat_all_gather = lambda x: x  # World size 1.
  # `make_gaussian` (`colorizer_momen.py:35-36`) calls `.cuda()`.
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  main_dis.args.training = True  # As `main_dis.py:63`.
  model = mast_momen.MAST(main_dis.args)
  colorizer, h8 = model.colorizer, a.image_size // 8
  colorizer.feats_queue = torch.randn(a.queue, 128, h8, h8)
  colorizer.refs_queue = torch.full((a.queue,), 10_000)  # Other videos.
  colorizer.flag[0] = colorizer.factor + 1  # Active.
  optimizer = torch.optim.Adam(model.parameters(), lr=main_dis.args.lr,
                               betas=(0.9, 0.999))  # `main_dis.py:85`.
  t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  images = [t(batch["reference"]), t(batch["target"])]
  refs = torch.from_numpy(batch["video_id"]).long()

  def run():  # `main_dis.py:171-181`.
    model.train()
    main_dis.adjust_lr(optimizer, 0, 0, 1, True)
    images_lab_gt = [x.clone() for x in images]
    images_lab = [x.clone() for x in images]
    ch = _drop_channel(images_lab)
    loss, _ = main_dis.compute_lphoto(model, images_lab, images_lab_gt, ch,
                                      refs, True, True, False)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

  return run


def main():
  a = _args()
  batch = _batch(a.batch_size, a.image_size)
  print(f"LIIR step: batch {a.batch_size}, {a.image_size} px, width "
        f"{a.width}, queue {a.queue}, pe {a.pe_size}; device "
        f"{jax.devices()[0].device_kind}; load {os.getloadavg()}")
  compile_s, ours = bench_ours(a, batch)
  print(f"ours:  compile {compile_s:.1f} s")
  runs = {"ours": ours}
  if a.torch:
    runs["transcription"] = bench_torch(a, batch)
  if a.reference_dir:
    runs["reference"] = bench_reference(a, batch)
  times, loads = interleaved_rounds.interleave(
      runs, warmup=a.warmup, rounds=a.pairs, steps=a.steps)
  for name in runs:
    print(interleaved_rounds.summary_line(name, times[name], loads[name])
          + (interleaved_rounds.ratio_text(name, "ours", times)
             if name != "ours" else ""), flush=True)


if __name__ == "__main__":
  main()
