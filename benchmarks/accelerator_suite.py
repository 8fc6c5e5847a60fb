r"""One-GPU benchmark suite: train steps vs the references, DAVIS propagation.

Rows (each in its own child process, so each peak memory is its own):
  fc_f32     FC train step at the paper config (batch 96, 256 px, float32);
  fc_bf16    the same with config.model.dtype = 'bfloat16', only when the
             model config has a `dtype` field;
  fc_ref     SFC's PyTorch step on the same batch (benchmarks/train_step.py
             `bench_reference`), when <refs>/SFC is a checkout of
             Alxead/SFC;
  crw_f32    CRW train step at the paper config (20 clips x 4 x 49 patches);
  crw_bf16   the same with config.model.dtype = 'bfloat16';
  crw_ref    videowalk's step, when <refs>/videowalk is a checkout of
             ajabri/videowalk (needs torchvision);
  liir_f32   LIIR train step at configs/liir.py (batch 12 frame pairs,
             256 px, queue 960), float32;
  mask_vos_f32
             Mask-VOS full-loss train step at configs/mask_vos.py (batch 16
             clips, 256 px, N = 2 references, 5 objects), float32; both on
             the first batch of their own pipelines over the embedded
             synthetic videos (corrjax.aot.first_synthetic_batch);
  kmeans     Mask-VOS space-time k-means (corrjax.ops.kmeans, M = 5, 100
             EM steps, 48-d 3D position encoding) on 4 videos of 100
             frames x 32 x 32 cells x 128-d keys in one call
             (benchmarks/clustering.py's inputs): ms per video;
  davis_prop label propagation on DAVIS-2016 val (20 videos, 480p) with a
             random-init ResNet-18, feature extraction included, when
             --davis_root (or $CORRJAX_DATA/davis2016) exists: seconds, J&F.

Train rows report steps/s, MFU (XLA's FLOP count of our step over the
device's dense peak at the row's precision: TF32 for float32, bf16 for
bfloat16), and the config's `total_steps` projected at that step time
(60k for FC). Peak memory: the device allocator's peak (JAX
`memory_stats()['peak_bytes_in_use']`, torch `max_memory_allocated`), or
the process's peak RSS on CPU. Writes <out_dir>/accelerator_suite.md (one
markdown table) and accelerator_suite.json.

  bash benchmarks/accelerator_suite.sh            # into $OUT or ./bench_out
  python benchmarks/accelerator_suite.py --tiny --out_dir=/tmp/suite
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

ROWS = ("fc_f32", "fc_bf16", "fc_ref", "crw_f32", "crw_bf16", "crw_ref",
        "liir_f32", "mask_vos_f32", "kmeans", "davis_prop")
# Methods whose config train_step.py does not load (their own configs).
OWN_CONFIGS = ("liir", "mask_vos")
# Dense bf16 TFLOP/s by device kind (f32 rows use train_step.PEAKS, TF32).
BF16_PEAKS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4),
              ("A100", 312.0))


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tiny", action="store_true",
                 help="toy sizes on CPU (seconds): checks the script runs")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or "bench_out")
  p.add_argument("--refs", default=os.path.join(REPO, ".refs"),
                 help="folder holding SFC/ and videowalk/ checkouts")
  p.add_argument("--davis_root", default=os.path.join(
      os.environ.get("CORRJAX_DATA", ""), "davis2016"))
  p.add_argument("--steps", type=int, default=20, help="timed train steps")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps")
  p.add_argument("--rows", default=",".join(ROWS))
  p.add_argument("--row_timeout", type=int, default=300, help="seconds")
  p.add_argument("--in_process", action="store_true",
                 help="run the rows in this process, one after the other "
                 "(no per-row peak memory; for the --tiny test)")
  p.add_argument("--row", help=argparse.SUPPRESS)  # Child: run one row.
  p.add_argument("--result", help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ----------------------------------------------------------------------------
# Rows, each run in a child process.
# ----------------------------------------------------------------------------


def _train_config(args, method):
  """The paper config of `method` (toy sizes with --tiny)."""
  import train_step  # pylint: disable=g-import-not-at-top,import-error
  if method in OWN_CONFIGS:  # Their :smoke configs are toy-sized.
    from corrjax import config_defaults  # pylint: disable=g-import-not-at-top
    return config_defaults.load(os.path.join(
        REPO, "configs", f"{method}.py" + (":smoke" if args.tiny else "")))
  ns = argparse.Namespace(method=method, config_arg="smoke" if args.tiny
                          else "", batch_size=None, image_size=None,
                          width=None)
  config = train_step.load_config(ns)
  if args.tiny:  # The smallest shapes: the test checks the script runs.
    config.data.update(batch_size=4, crop_size=32)
    if method == "crw":  # 2x2 patches of 16 px per frame.
      config.data.update(patch_size=16, patch_stride=16)
  return config


def _peak_memory(platform: str) -> dict:
  if platform == "torch_cuda":
    import torch  # pylint: disable=g-import-not-at-top
    return {"peak_bytes": torch.cuda.max_memory_allocated(),
            "peak_kind": "torch max_memory_allocated"}
  if platform == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      return {"peak_bytes": int(stats["peak_bytes_in_use"]),
              "peak_kind": f"{jax.devices()[0].platform} peak_bytes_in_use"}
  return {"peak_bytes": resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_kind": "host peak RSS"}


def _mfu(flops_per_step, ms, device_kind, bf16):
  import train_step  # pylint: disable=g-import-not-at-top,import-error
  peaks = BF16_PEAKS if bf16 else train_step.PEAKS
  peak = next((p for k, p in peaks if k.lower() in device_kind.lower()),
              None)
  tflops = flops_per_step / (ms / 1e3) / 1e12
  return tflops, peak, (tflops / peak if peak else None)


def row_train(args, method, bf16=False):
  """Our jitted, sharded step (train_step.bench_ours) at the paper config."""
  import jax  # pylint: disable=g-import-not-at-top
  import train_step  # pylint: disable=g-import-not-at-top,import-error
  config = _train_config(args, method)
  if bf16:
    if "dtype" not in config.model:
      return {"skipped": "config.model.dtype does not exist (float32 only)"}
    config.model.dtype = "bfloat16"
  if method in OWN_CONFIGS:
    from corrjax import aot  # pylint: disable=g-import-not-at-top
    batch = aot.first_synthetic_batch(config)
    what = f"{config.model.arch} width {config.model.width}; " + ", ".join(
        f"{k} {list(v.shape)}" for k, v in batch.items() if v.ndim > 1)
  else:
    batch = train_step.make_method_batch(config)
    what = train_step.describe(config)
  r = train_step.bench_ours(config, batch, args.warmup, args.steps)
  dev = jax.devices()[0]
  tflops, peak, mfu = _mfu(r["flops_per_step"], r["ms_median"],
                           dev.device_kind, bf16)
  r.update(what=what, device=dev.device_kind,
           steps_per_s=1e3 / r["ms_median"], achieved_tflops=tflops,
           peak_tflops=peak, mfu=mfu, total_steps=config.total_steps,
           projected_hours=config.total_steps * r["ms_median"] / 3.6e6,
           **_peak_memory("jax"))
  return r


def row_reference(args, method):
  """The reference's step via train_step.bench_reference, run inline.

  bench_reference runs `train_step.py --reference_child=<tmp>` in a fresh
  process; this row's process is already fresh (no TF, no XLA run), so the
  child's work is done here instead, where torch's peak memory can be read.
  """
  import train_step  # pylint: disable=g-import-not-at-top,import-error
  name = {"fc": "SFC", "crw": "videowalk"}[method]
  ref_dir = os.path.join(args.refs, name)
  if not os.path.isdir(os.path.join(ref_dir, "code")):
    return {"skipped": f"no {name} checkout in {ref_dir}"}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {"skipped": "torch is not installed"}
  config = _train_config(args, method)
  if config.model.width != 64:
    return {"skipped": "the reference's ResNet has a fixed width of 64"}
  batch = train_step.make_method_batch(config)

  def inline(cmd, check=True, **kwargs):
    del check, kwargs
    tmp = cmd[-1].split("=", 1)[1]
    train_step.reference_child(tmp)
    path = os.path.join(tmp, "result.json")
    with open(path) as f:
      result = json.load(f)
    result.update(_peak_memory("torch_cuda" if torch.cuda.is_available()
                               else "cpu"))
    with open(path, "w") as f:
      json.dump(result, f)

  subprocess.run = inline  # This child process runs nothing else.
  r = train_step.bench_reference(ref_dir, config, batch, args.warmup,
                                 args.steps)
  r.update(what=f"{name} (PyTorch): " + train_step.describe(config),
           steps_per_s=1e3 / r["ms_median"],
           total_steps=config.total_steps,
           projected_hours=config.total_steps * r["ms_median"] / 3.6e6)
  return r


def row_davis(args):
  """Random-init ResNet-18 label propagation, features included."""
  # pylint: disable=g-import-not-at-top
  import jax
  from corrjax import config_defaults
  from corrjax import networks
  from corrjax.evals import benchmarks
  from corrjax.evals import protocol
  from corrjax.evals import vos
  # pylint: enable=g-import-not-at-top
  if args.tiny:
    config = config_defaults.load(
        os.path.join(REPO, "configs/random_init.py:width=8"))
    e = config.evals.synthetic
    e.synthetic.update(num_videos=2, num_frames=6, height=64, width=64)
    e.update(context=3, topk=5)
  else:
    if not os.path.isdir(os.path.join(args.davis_root, "JPEGImages")):
      return {"skipped": f"no DAVIS-2016 root at {args.davis_root!r}"}
    config = config_defaults.load(
        os.path.join(REPO, "configs/random_init.py:davis"))
    e = config.evals.davis
    e.root = args.davis_root
  net = networks.random_init(config)
  t0 = time.perf_counter()
  videos = benchmarks.read_videos(e)
  load_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  result = vos.evaluate(videos, net, protocol.Propagation.from_config(e),
                        log=lambda _: None)
  total_s = time.perf_counter() - t0
  frames = sum(len(v.frames) for v in videos)
  h, w = videos[0].frames.shape[1:3]
  return {"what": f"{len(videos)} videos, {frames} frames, {h}x{w}, "
                  f"random-init {config.model.arch} width "
                  f"{config.model.width}, topk {e.topk} radius {e.radius} "
                  f"context {e.context}",
          "device": jax.devices()[0].device_kind, "total_s": total_s,
          "load_s": load_s, "frames_per_s": frames / total_s,
          "jf": float(result["global"]["J&F-Mean"]),
          "j": float(result["global"]["J-Mean"]),
          "f": float(result["global"]["F-Mean"]), **_peak_memory("jax")}


def row_kmeans(args):
  """Batched space-time k-means per video (module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import clustering  # pylint: disable=g-import-not-at-top,import-error
  from corrjax.ops import kmeans  # pylint: disable=g-import-not-at-top
  videos, frames, cells = (2, 4, 8) if args.tiny else (4, 100, 32)
  x = jax.block_until_ready(clustering.make_inputs(
      np.random.default_rng(0), videos, frames, cells, pe_dim=48))

  def call(seed):
    return jax.block_until_ready(kmeans.kmeans(
        jax.random.key(seed), x, num_clusters=5, num_steps=100))

  call(0)  # Compile.
  times = []
  for seed in range(1, max(args.steps, 1) + 1):
    t0 = time.perf_counter()
    out = call(seed)
    times.append((time.perf_counter() - t0) / videos * 1e3)
  dev = jax.devices()[0]
  return {"what": f"{videos} videos x {frames} frames x {cells}x{cells} "
                  f"cells x {x.shape[-1]} dims, M 5, 100 EM steps max",
          "device": dev.device_kind,
          "ms_per_video": float(np.median(times)),
          "ms_per_video_range": [float(min(times)), float(max(times))],
          "em_steps": float(np.mean(np.asarray(out["steps"]))),
          **_peak_memory("jax")}


def run_row(args):
  """Child entry point: one row, its result written as JSON."""
  name = args.row
  if not name.endswith("_ref"):  # JAX rows import clu, hence TensorFlow.
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.set_visible_devices([], "GPU")  # As corrjax.main does.
    except ImportError:
      pass
  if name.endswith(("_f32", "_bf16")):
    method, precision = name.rsplit("_", 1)
    r = row_train(args, method, bf16=precision == "bf16")
  elif name == "kmeans":
    r = row_kmeans(args)
  elif name in ("fc_ref", "crw_ref"):
    r = row_reference(args, name.split("_")[0])
  else:
    r = row_davis(args)
  with open(args.result, "w") as f:
    json.dump(r, f)


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def _child_args(args, row, result):
  cmd = [sys.executable, os.path.abspath(__file__), f"--row={row}",
         f"--result={result}", f"--refs={args.refs}",
         f"--davis_root={args.davis_root}", f"--steps={args.steps}",
         f"--warmup={args.warmup}"]
  return cmd + (["--tiny"] if args.tiny else [])


def _skip_reason(args, row) -> str | None:
  """Why `row` cannot run here, found without starting a child."""
  from corrjax import config_defaults  # pylint: disable=g-import-not-at-top
  if row in ("fc_bf16", "crw_bf16"):
    config = config_defaults.load(
        os.path.join(REPO, f"configs/{row.split('_')[0]}.py"))
    if "dtype" not in config.model:
      return "config.model.dtype does not exist (float32 only)"
  if row in ("fc_ref", "crw_ref"):
    name = {"fc_ref": "SFC", "crw_ref": "videowalk"}[row]
    if not os.path.isdir(os.path.join(args.refs, name, "code")):
      return f"no {name} checkout in {os.path.join(args.refs, name)}"
    if args.tiny:
      return "the reference's ResNet has a fixed width of 64 (--tiny)"
  if row == "davis_prop" and not args.tiny and not os.path.isdir(
      os.path.join(args.davis_root, "JPEGImages")):
    return f"no DAVIS-2016 root at {args.davis_root!r}"
  return None


def run_suite(args) -> dict:
  """Runs the rows one process each; returns {row: result dict}."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  if args.tiny:
    env.update(JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
               CUDA_VISIBLE_DEVICES="")
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for row in args.rows.split(","):
      if row not in ROWS:
        raise SystemExit(f"unknown row {row!r}; choose from {ROWS}")
      path = os.path.join(tmp, f"{row}.json")
      t0 = time.perf_counter()
      skip = _skip_reason(args, row)
      if skip:
        results[row] = {"skipped": skip, "row_wall_s": 0.0}
        print(f"[{row}] skipped: {skip}", flush=True)
        continue
      print(f"[{row}] running...", flush=True)
      if args.in_process:
        run_row(argparse.Namespace(**dict(vars(args), row=row, result=path)))
        with open(path) as f:
          results[row] = dict(json.load(f),
                              row_wall_s=time.perf_counter() - t0)
        continue
      try:
        proc = subprocess.run(_child_args(args, row, path), env=env,
                              capture_output=True, text=True,
                              timeout=args.row_timeout)
        if proc.returncode or not os.path.exists(path):
          tail = (proc.stderr or proc.stdout).strip().splitlines()
          r = {"failed": tail[-1] if tail else f"exit {proc.returncode}"}
          sys.stderr.write(proc.stderr[-3000:])
        else:
          with open(path) as f:
            r = json.load(f)
      except subprocess.TimeoutExpired:
        r = {"failed": f"timed out after {args.row_timeout} s"}
      r["row_wall_s"] = time.perf_counter() - t0
      results[row] = r
      print(f"[{row}] {_summary(r)} ({r['row_wall_s']:.0f} s)", flush=True)
  return results


def _summary(r):
  if "skipped" in r:
    return f"skipped: {r['skipped']}"
  if "failed" in r:
    return f"FAILED: {r['failed']}"
  if "jf" in r:
    return f"{r['total_s']:.1f} s, J&F {r['jf']:.3f}"
  if "ms_per_video" in r:
    return f"{r['ms_per_video']:.1f} ms per video"
  return f"{r['steps_per_s']:.2f} steps/s"


def _fmt(value, spec, default="-"):
  return default if value is None else format(value, spec)


def format_markdown(results: dict, header: str) -> str:
  """One markdown table of every row."""
  lines = [header, "",
           "| row | what | device | steps/s | ms/step (p10-p90) | "
           "TFLOP/step | MFU | projected | seconds | J&F | peak memory |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for row, r in results.items():
    if "skipped" in r or "failed" in r:
      lines.append(f"| {row} | {_summary(r)} |  |  |  |  |  |  |  |  |  |")
      continue
    peak = (f"{r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_kind']})"
            if "peak_bytes" in r else "-")
    if "jf" in r:
      lines.append(
          f"| {row} | {r['what']} | {r['device']} |  |  |  |  |  | "
          f"{r['total_s']:.1f} (+{r['load_s']:.1f} load) | {r['jf']:.4f} | "
          f"{peak} |")
      continue
    if "ms_per_video" in r:
      lo, hi = r["ms_per_video_range"]
      lines.append(
          f"| {row} | {r['what']} | {r['device']} |  |  |  |  |  | "
          f"{r['ms_per_video']:.1f} ms per video ({lo:.1f}-{hi:.1f}) |  | "
          f"{peak} |")
      continue
    flops = r.get("flops_per_step")
    mfu = (f"{r['mfu']:.1%} of {r['peak_tflops']:.0f}"
           if r.get("mfu") else "-")
    lines.append(
        f"| {row} | {r['what']} | {r.get('device', '-')} | "
        f"{r['steps_per_s']:.2f} | {r['ms_median']:.1f} "
        f"({r['ms_p10']:.1f}-{r['ms_p90']:.1f}) | "
        f"{_fmt(flops and flops / 1e12, '.2f')} | {mfu} | "
        f"{r['total_steps']} steps: {r['projected_hours']:.2f} h |  |  | "
        f"{peak} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  args = _parse_args(argv)
  if args.row:
    run_row(args)
    return
  start = time.time()
  results = run_suite(args)
  os.makedirs(args.out_dir, exist_ok=True)
  header = (f"# corrjax accelerator suite{' (--tiny)' if args.tiny else ''}"
            f"\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{args.steps} timed steps after {args.warmup}, total "
            f"{time.time() - start:.0f} s.")
  with open(os.path.join(args.out_dir, "accelerator_suite.md"), "w") as f:
    f.write(format_markdown(results, header))
  with open(os.path.join(args.out_dir, "accelerator_suite.json"), "w") as f:
    json.dump({"tiny": args.tiny, "steps": args.steps,
               "warmup": args.warmup, "rows": results}, f, indent=2)
  print(format_markdown(results, header))


if __name__ == "__main__":
  main()
