r"""Throughput of one FC train step, ours (JAX) and optionally SFC's (PyTorch).

Times the jitted, sharded step as `corrjax.train` builds it (`create_state`,
`make_train_step`, `corrjax.sharding`) on one fixed random uint8 two-view
batch already on device (no input pipeline): compile time; median, p10, p90
of `--steps` steps after `--warmup` (`block_until_ready` each); examples/s
(an example is one frame's two crops, 2 images); FLOPs per step as XLA counts
them (`compile().cost_analysis()['flops']`: online and target passes of both
views, loss, Adam, EMA); TFLOP/s; MFU; the 60k-step schedule at this step
time. `--steps=0` only compiles (FLOPs of sizes too big to run).

MFU divides by `--peak_tflops`, by default the dense rate at the precision
this f32 model runs at under JAX's default matmul precision: TF32 on NVIDIA
(H100/H200 SXM 494.7, H100 PCIe 378, A100 156), bf16 passes on TPU. (Against
H100's 989 bf16 peak, halve it.) CPU: n/a unless `--peak_tflops` is given.

`--reference_dir` (a checkout of github.com/Alxead/SFC) also times SFC's
PyTorch `FineGrained` (same sizes), imported from that checkout at runtime:
forward + backward + Adam step on the same batch, on CUDA (SFC's cudnn
settings) else CPU, in a child process run first (see `bench_reference`).
Threads: XLA's CPU pool uses all cores by default; torch gets
`set_num_threads(os.cpu_count())`.

Interleaved pairs (`--pairs`, default 3, with `--reference_dir`): ours and
the reference alternate (A B A B ...), each run in a fresh child process
(ours never shares a process with torch, nor the reference with TF/XLA);
the script prints every pair's step times, the 1-minute load averages
before and after each run, the per-pair ratios (reference ms / ours ms),
their median and range. A single sequential pair cannot show a ratio on a
shared machine. `--pairs=0` keeps the old single in-process run of ours
after one reference child.

`--method=crw` times CRW's step on clips of T frames x 7x7 patches (the
reference batch: 20 clips x 4 frames x 49 patches of 64 px; an example is a
clip; `--image_size` sets the patch size, with crop 4x and stride 1/2 of it
so the grid stays 7x7). Its `--reference_dir` is a checkout of
github.com/ajabri/videowalk: `code/model.py`'s `CRW` (forward, backward,
Adam step), which needs torchvision on the child's path (e.g. PYTHONPATH).

  python benchmarks/train_step.py --method=fc   # paper recipe: b96, 256 px
  python benchmarks/train_step.py --method=fc --batch_size=8 \
      --image_size=128 --steps=5 --warmup=2 \
      --reference_dir=/tmp/sfc_ref --out=/tmp/bench.jsonl
  python benchmarks/train_step.py --method=crw --batch_size=2 --steps=3 \
      --warmup=1 --reference_dir=/tmp/vw

`--method=liir` and `--method=mask_vos` run their own scripts with the
other flags (benchmarks/liir_step.py against LIIR_pytorch's step,
benchmarks/mask_vos_speed.py for both phases and inference): their
batches and references differ from FC's and CRW's.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from corrjax import config_defaults
from corrjax import methods
from corrjax import optim
from corrjax import sharding
from corrjax.data import normalization

CONFIGS = {"fc": "configs/fc.py", "crw": "configs/crw.py"}
# Methods whose step benchmark is a script of its own (module docstring).
OWN_SCRIPTS = {"liir": "liir_step.py", "mask_vos": "mask_vos_speed.py"}
# (substring of device_kind, dense TFLOP/s at the precision f32 runs at).
PEAKS = (("H100 PCIe", 378.0), ("H100", 494.7), ("H200", 494.7),
         ("A100", 156.0), ("TPU v4", 275.0), ("TPU v5 lite", 197.0),
         ("TPU v5", 459.0), ("TPU v6", 918.0))


def _parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--method", default="fc",
                 choices=sorted([*CONFIGS, *OWN_SCRIPTS]))
  p.add_argument("--config_arg", default="", help="e.g. 'smoke' (fc.py:ARG)")
  p.add_argument("--batch_size", type=int, help="global; default: config")
  p.add_argument("--image_size", type=int,
                 help="crop (fc) or patch (crw) size; default: config")
  p.add_argument("--width", type=int, help="ResNet width; default: config")
  p.add_argument("--steps", type=int, default=10, help="timed steps")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps")
  p.add_argument("--peak_tflops", type=float, help="default: by device kind")
  p.add_argument("--reference_dir",
                 help="checkout of Alxead/SFC (fc) or ajabri/videowalk (crw)")
  p.add_argument("--out", help="append one JSON line of results here")
  p.add_argument("--pairs", type=int, default=3,
                 help="interleaved ours/reference child runs (0: one each)")
  p.add_argument("--reference_child", help=argparse.SUPPRESS)
  p.add_argument("--ours_child", help=argparse.SUPPRESS)
  return p.parse_args()


def load_config(args):
  c = config_defaults.load(
      f"{os.path.join(REPO, CONFIGS[args.method])}:{args.config_arg}")
  for part, key, value in (("data", "batch_size", args.batch_size),
                           ("data", "crop_size", args.image_size),
                           ("model", "width", args.width)):
    if value:
      c[part][key] = value
  if args.method == "crw" and args.image_size:
    # The reference's proportions: 256 px crops, 64 px patches, stride 32.
    c.data.update(patch_size=args.image_size, crop_size=4 * args.image_size,
                  patch_stride=args.image_size // 2)
  return c


def make_method_batch(config, seed=0):
  """A random uint8 batch of the config's method, as its pipeline gives."""
  d = config.data
  if config.method != "crw":
    return make_batch(d.batch_size, d.crop_size, seed)
  grid = (d.crop_size - d.patch_size) // d.patch_stride + 1
  rng = np.random.default_rng(seed)
  return {"patches": rng.integers(
      0, 256, (d.batch_size, d.clip_len, grid * grid, d.patch_size,
               d.patch_size, 3), np.uint8)}


def describe(config) -> str:
  """One line of the sizes that set the step's cost."""
  d, m = config.data, config.model
  if config.method == "crw":
    grid = (d.crop_size - d.patch_size) // d.patch_stride + 1
    return (f"batch {d.batch_size} clips x {d.clip_len} frames x "
            f"{grid}x{grid} patches of {d.patch_size} px, {m.arch} width "
            f"{m.width}, head -> {m.embed_dim}")
  return (f"batch {d.batch_size}, {d.crop_size} px, {m.arch} width "
          f"{m.width}, heads {m.projection_hidden_dim}->{m.projection_dim}")


def make_batch(batch_size, size, seed=0):
  """Two uint8 views of random pixels and overlapping crop boxes."""
  rng = np.random.default_rng(seed)
  x1, y1 = rng.uniform(0, 0.4, (2, batch_size))
  box1 = np.stack([x1, y1, x1 + 0.5, y1 + 0.5], 1).astype(np.float32)
  return {"view1": rng.integers(0, 256, (batch_size, size, size, 3), np.uint8),
          "view2": rng.integers(0, 256, (batch_size, size, size, 3), np.uint8),
          "box1": box1, "box2": box1 + np.float32(0.05)}


def _timed(step_fn, warmup, steps, batch_size):
  """Step-time statistics of `steps` calls after `warmup` untimed ones."""
  times, losses = [], []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    losses.append(step_fn())
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  p10, p50, p90 = np.percentile(np.asarray(times) * 1e3, [10, 50, 90])
  return {"ms_median": p50, "ms_p10": p10, "ms_p90": p90,
          "examples_per_s": batch_size / (p50 / 1e3),
          "loss_first": losses[0], "loss_last": losses[-1],
          "loadavg_1m_after": os.getloadavg()[0]}


def bench_ours(config, batch, warmup, steps):
  """Compile time, FLOPs and step times of the sharded, jitted train step."""
  # corrjax.train imports clu, hence TensorFlow: imported here, not at the top,
  # so that the reference's process never loads it (see bench_reference).
  from corrjax import train  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  sharding.check_batch_size(config.data.batch_size, mesh)
  model = methods.get(config.method).build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state, state_sh = train.create_state(config, mesh, model, tx)
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  batch = jax.block_until_ready(sharding.shard_host_batch(
      batch, sharding.batch_sharding(mesh)))
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  result = {"compile_s": time.perf_counter() - t0}
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  result["flops_per_step"] = float((cost or {}).get("flops", float("nan")))
  if not steps:
    return result

  def run():
    nonlocal state
    state, metrics = compiled(state, batch)
    jax.block_until_ready(state)
    return float(metrics["loss"])

  return {**result, **_timed(run, warmup, steps, config.data.batch_size)}


def bench_reference(ref_dir, config, batch, warmup, steps):
  """SFC's step, in a process that never loaded TF or ran XLA, run first.

  On CPU, PyTorch in a process that had imported TensorFlow or run XLA ran up
  to 30x slower and erratically (thread pools competing for the cores).
  """
  m = config.model
  spec = {"ref_dir": os.path.abspath(ref_dir), "arch": m.arch,
          "method": config.method, "warmup": warmup, "steps": steps,
          "lr": config.optim.learning_rate, "wd": config.optim.weight_decay,
          "stats": normalization.STATS[config.data.normalization]}
  if config.method == "crw":
    w = config.walk
    spec["args"] = dict(  # The fields of videowalk's train_args() CRW reads.
        model_type="scratch" if m.padding_mode == "reflect"
        else "scratch_zeropad", remove_layers=[], dropout=w.edge_dropout,
        temp=w.temperature, head_depth=m.head_depth, flip=w.flip,
        sk_targets=False, featdrop=0.0)
  else:
    spec["args"] = dict(  # The fields of SFC's train_args() FineGrained reads.
        momentum_target=config.ema.base_momentum,
        pos_radius=config.loss.radius, num_steps=config.total_steps,
        epochs=1, remove_stride_layers=("layer3", "layer4"),
        img_size=config.data.crop_size,
        projection_hidden_dim=m.projection_hidden_dim,
        prediction_hidden_dim=m.prediction_hidden_dim,
        projection_dim=m.projection_dim)
  with tempfile.TemporaryDirectory() as tmp:
    np.savez(os.path.join(tmp, "batch.npz"), **batch)
    with open(os.path.join(tmp, "spec.json"), "w") as f:
      json.dump(spec, f)
    load = os.getloadavg()[0]
    subprocess.run([sys.executable, os.path.abspath(__file__),
                    f"--reference_child={tmp}"], check=True)
    with open(os.path.join(tmp, "result.json")) as f:
      return {**json.load(f), "loadavg_1m_before": load}


def reference_child(tmp):
  """The reference's step in this process; writes tmp/result.json."""
  with open(os.path.join(tmp, "spec.json")) as f:
    spec = json.load(f)
  batch = dict(np.load(os.path.join(tmp, "batch.npz")))
  run = _crw_reference if spec["method"] == "crw" else _fc_reference
  result = run(spec, batch)
  with open(os.path.join(tmp, "result.json"), "w") as f:
    json.dump(result, f)


def _import_torchvision():
  """torchvision, also a PyPI (CUDA) wheel beside a CPU-only torch.

  Such a wheel's C++ ops do not load, and registering their fake kernels
  then fails at import; CRW needs only torchvision's Python ResNet, so the
  registration is skipped in that case.
  """
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
    return torchvision
  except RuntimeError:
    import torch.library  # pylint: disable=g-import-not-at-top
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
      del sys.modules[name]
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda fn: fn)
    try:
      import torchvision  # pylint: disable=g-import-not-at-top
    finally:
      torch.library.register_fake = register_fake
    return torchvision


def _crw_reference(spec, batch):
  """videowalk's CRW (`code/model.py`): forward + backward + Adam step.

  `train.py:31-53`: loss = model(video)[1].mean(), zero_grad, backward,
  step; cudnn.benchmark on (`train.py:75`). Its `utils` package imports
  visualisation and augmentation modules (visdom, sklearn, skimage) that
  the model does not use: they are replaced by empty modules here.
  """
  import types  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  _import_torchvision()
  code = os.path.join(spec["ref_dir"], "code")
  sys.path.insert(0, code)
  for name in ("visualize", "augs", "arguments"):
    sys.modules[f"utils.{name}"] = types.ModuleType(f"utils.{name}")
  import model as vw_model  # pylint: disable=g-import-not-at-top,import-error
  sys.excepthook = sys.__excepthook__  # `utils` installs a pdb hook.
  torch.set_num_threads(os.cpu_count())
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  model = vw_model.CRW(argparse.Namespace(device=str(device), **spec["args"]))
  model.to(device).train(True)
  opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
  mean, std = (np.asarray(s, np.float32) for s in spec["stats"])
  x = (batch["patches"].astype(np.float32) / 255.0 - mean) / std
  b, t, n, p = x.shape[:4]  # -> [B, T, N * 3, P, P], as `patch_grid` makes.
  x = x.transpose(0, 1, 2, 5, 3, 4).reshape(b, t, n * 3, p, p)
  video = torch.from_numpy(np.ascontiguousarray(x)).to(device)

  def run():
    loss = model(video)[1].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()  # Synchronises on CUDA.

  return {"device": str(device), "torch_version": torch.__version__,
          "torch_threads": torch.get_num_threads(),
          **_timed(run, spec["warmup"], spec["steps"], b)}


def _fc_reference(spec, batch):
  """SFC's PyTorch FineGrained: forward + backward + Adam step, as trained."""
  import torch  # pylint: disable=g-import-not-at-top
  code = os.path.join(spec["ref_dir"], "code")
  sys.path.insert(0, code)  # Their model files import only torch and numpy.
  modules = []
  for name in ("resnet", "fine_grained"):
    module_spec = importlib.util.spec_from_file_location(
        f"sfc_{name}", os.path.join(code, "models", f"{name}.py"))
    modules.append(importlib.util.module_from_spec(module_spec))
    module_spec.loader.exec_module(modules[-1])
  resnet, fine_grained = modules
  torch.set_num_threads(os.cpu_count())
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.deterministic = True  # As SFC's code/train.py.
  torch.backends.cudnn.benchmark = False
  torch.manual_seed(0)
  model = fine_grained.FineGrained(getattr(resnet, spec["arch"]),
                                   argparse.Namespace(**spec["args"]))
  model.to(device).train(True)
  opt = torch.optim.Adam(model.parameters(), lr=spec["lr"],
                         weight_decay=spec["wd"])
  mean, std = (np.asarray(s, np.float32) for s in spec["stats"])

  def to_torch(view):  # [B, S, S, 3] uint8 -> [B, T=1, 3, S, S] normalised.
    x = (view.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(x.transpose(0, 3, 1, 2)[:, None].copy()).to(device)

  v1, v2 = to_torch(batch["view1"]), to_torch(batch["view2"])
  c1, c2 = (torch.from_numpy(batch[k][:, None]).to(device)
            for k in ("box1", "box2"))

  def run():
    loss = model(v1, v2, c1, c2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()  # Synchronises on CUDA.

  return {"device": str(device), "torch_version": torch.__version__,
          "torch_threads": torch.get_num_threads(),
          **_timed(run, spec["warmup"], spec["steps"], len(v1))}


# What `examples_per_s` counts, per method.
UNITS = {"fc": "examples/s (x2 images)", "crw": "clips/s"}


def _line(name, r, unit):
  return (f"{name}: step median {r['ms_median']:.1f} ms (p10 "
          f"{r['ms_p10']:.1f}, p90 {r['ms_p90']:.1f}) | "
          f"{r['examples_per_s']:.2f} {unit} | loss "
          f"{r['loss_first']:.4f} -> {r['loss_last']:.4f}")


def ours_child(args):
  """Our step in this (child) process; writes JSON to `args.ours_child`."""
  config = load_config(args)
  batch = make_method_batch(config)
  load = os.getloadavg()[0]
  result = bench_ours(config, batch, args.warmup, args.steps)
  result.update(loadavg_1m_before=load,
                device_kind=jax.devices()[0].device_kind,
                num_devices=jax.device_count())
  with open(args.ours_child, "w") as f:
    json.dump(result, f)


def run_ours_child(argv):
  """Runs `ours_child` in a fresh process with the parent's arguments."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "ours.json")
    subprocess.run([sys.executable, os.path.abspath(__file__), *argv,
                    f"--ours_child={path}"], check=True)
    with open(path) as f:
      return json.load(f)


def interleaved(args):
  """`--pairs` pairs of child runs, ours then the reference."""
  config = load_config(args)
  unit = UNITS[args.method]
  batch = make_method_batch(config)
  argv, skip = [], False
  for a in sys.argv[1:]:  # Without --out (the parent writes it).
    if not skip and not a.startswith("--out"):
      argv.append(a)
    skip = a == "--out"
  print(f"{args.method}: {describe(config)}; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; {args.pairs} interleaved pairs",
        flush=True)
  pairs = []
  for i in range(args.pairs):
    ours = run_ours_child(argv)
    print(_line(f"pair {i + 1} ours", ours, unit) +
          f" | load {ours['loadavg_1m_before']:.2f} -> "
          f"{ours['loadavg_1m_after']:.2f}", flush=True)
    ref = bench_reference(args.reference_dir, config, batch, args.warmup,
                          args.steps)
    print(_line(f"pair {i + 1} reference", ref, unit) +
          f" | load {ref['loadavg_1m_before']:.2f} -> "
          f"{ref['loadavg_1m_after']:.2f}", flush=True)
    pairs.append({"ours": ours, "reference": ref,
                  "ratio": ref["ms_median"] / ours["ms_median"]})
  ratios = [p["ratio"] for p in pairs]
  print("| pair | ours ms/step | reference ms/step | ratio (ref/ours) | "
        "load ours (before/after) | load ref (before/after) |")
  print("|---|---|---|---|---|---|")
  for i, p in enumerate(pairs):
    o, r = p["ours"], p["reference"]
    print(f"| {i + 1} | {o['ms_median']:.0f} ({o['ms_p10']:.0f}-"
          f"{o['ms_p90']:.0f}) | {r['ms_median']:.0f} ({r['ms_p10']:.0f}-"
          f"{r['ms_p90']:.0f}) | {p['ratio']:.2f} | "
          f"{o['loadavg_1m_before']:.1f}/{o['loadavg_1m_after']:.1f} | "
          f"{r['loadavg_1m_before']:.1f}/{r['loadavg_1m_after']:.1f} |")
  print(f"median ratio {np.median(ratios):.2f}, range {min(ratios):.2f} - "
        f"{max(ratios):.2f} over {len(ratios)} interleaved pairs")
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps({**{k: v for k, v in vars(args).items()
                             if v is not None}, "pairs": pairs,
                          "median_ratio": float(np.median(ratios))}) + "\n")


def _own_script(argv: list[str]) -> list[str] | None:
  """The command line of `--method`'s own script (OWN_SCRIPTS), or None."""
  for i, arg in enumerate(argv):
    if arg.startswith("--method="):
      method, rest = arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    elif arg == "--method" and i + 1 < len(argv):
      method, rest = argv[i + 1], argv[:i] + argv[i + 2:]
    else:
      continue
    if method in OWN_SCRIPTS:
      script = os.path.join(REPO, "benchmarks", OWN_SCRIPTS[method])
      return [sys.executable, script, *rest]
    return None
  return None


def main():
  own = _own_script(sys.argv[1:])
  if own:
    os.execv(own[0], own)
  args = _parse_args()
  if args.reference_child:
    reference_child(args.reference_child)
    return
  if args.ours_child:
    ours_child(args)
    return
  if (args.reference_dir and args.steps and args.pairs and
      load_config(args).model.width == 64):
    interleaved(args)
    return
  config = load_config(args)
  b, s, m = config.data.batch_size, config.data.crop_size, config.model
  load_before = os.getloadavg()[0]
  batch = make_method_batch(config)
  unit = UNITS[args.method]
  ref = None  # Timed before JAX starts a backend (which may take GPU memory).
  if args.reference_dir and args.steps and m.width != 64:
    print("reference: skipped (the reference's ResNet has a fixed width of "
          "64)")
  elif args.reference_dir and args.steps:
    print("timing the reference...", flush=True)
    ref = bench_reference(args.reference_dir, config, batch, args.warmup,
                          args.steps)
  dev = jax.devices()[0]
  print(f"{args.method}: {describe(config)}; {jax.device_count()}"
        f" x {dev.device_kind}, jax {jax.__version__}, {os.cpu_count()} CPUs, "
        f"load {load_before:.2f}", flush=True)
  if ref:
    print(_line(f"reference ({ref['device']}, torch {ref['torch_version']}, "
                f"{ref['torch_threads']} threads)", ref, unit), flush=True)
  result = {**{k: v for k, v in vars(args).items() if v is not None},
            "batch_size": b, "image_size": s, "width": m.width,
            "shapes": {k: list(v.shape) for k, v in batch.items()},
            "heads": ([m.embed_dim] if args.method == "crw" else
                      [m.projection_hidden_dim, m.projection_dim]),
            "device_kind": dev.device_kind, "num_devices": jax.device_count(),
            "cpus": os.cpu_count(), "jax_version": jax.__version__,
            "loadavg_1m_before": load_before}
  ours = result["ours"] = bench_ours(config, batch, args.warmup, args.steps)
  print(f"ours: compile {ours['compile_s']:.1f} s | "
        f"{ours['flops_per_step'] / 1e12:.3f} TFLOP/step (XLA count)")
  if args.steps:
    tflops = ours["flops_per_step"] / (ours["ms_median"] / 1e3) / 1e12
    peak = args.peak_tflops or next(
        (p for k, p in PEAKS if k.lower() in dev.device_kind.lower()), None)
    mfu = tflops / peak if peak else None
    hours = config.total_steps * ours["ms_median"] / 3.6e6
    print(_line("ours (jax)", ours, unit))
    print(f"ours: {tflops:.3f} TFLOP/s | MFU "
          f"{f'{mfu:.1%} of {peak} TFLOP/s' if mfu else 'n/a'} | "
          f"{config.total_steps} steps at this step time: {hours:.2f} h")
    result.update(achieved_tflops=tflops, peak_tflops=peak, mfu=mfu,
                  projected_hours=hours)
  if ref:
    result.update(reference=ref, ratio=ref["ms_median"] / ours["ms_median"])
    print(f"reference / ours: {result['ratio']:.2f}x")
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  main()
