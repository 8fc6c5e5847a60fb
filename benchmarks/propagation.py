r"""Speed and peak memory of CRW label propagation, ours and the reference's.

Ours: `corrjax.evals.label_propagation.propagate` (jit, windowed keys).
Reference (`--reference_dir`, a checkout of github.com/ajabri/videowalk,
e.g. `git -C <bare> archive HEAD code | tar -x -C /tmp/videowalk`): its own
`context_index_bank`, `MaskedAttention` and `mem_efficient_batched_affinity`
(`code/utils/test_utils.py:123-171`, `code/utils/__init__.py:327-362`),
imported at runtime with stub modules for its unused imports (matplotlib,
imageio, torchvision, visdom, its resnet), driven by a transcription of the
loop of `code/test.py:100-148` (`reference_propagate` below).

Inputs: random L2-normalised features float32 [T, h, w, C] (seeded), frame 0
labels one-hot of K random classes. Each measurement runs in its own child
process (`--child`), which reports its wall time, its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), its RSS once the inputs exist
(so peak - base is what propagation itself adds) and the 1-minute load
average before and after its timed call. Ours is timed after a
compile-and-run warm-up on the same shapes (the long video with
`--no_warmup`: one call, compilation included).

Interleaved pairs: on a shared machine one sequential pair of runs cannot
show a ratio, so for each C the script runs `--pairs` pairs, ours then the
reference (A B A B ...), each run in a fresh child process, and reports the
per-pair ratios (ours frames/s over the reference's), their median and
range, with the load averages next to each pair. Outputs of ours and the
reference on the same features are compared in every pair (max abs diff).

  python benchmarks/propagation.py --frames=4 --long_frames=0 \
      --channels=256 --pairs=3 --reference_dir=/tmp/videowalk
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

import module_stubs  # benchmarks/module_stubs.py, beside this script.  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mib() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(frames, h, w, c, k, seed=0):
  """float32 [T, h, w, C] L2-normalised features, [h, w, K] one-hot."""
  rng = np.random.default_rng(seed)
  feats = np.empty((frames, h, w, c), np.float32)
  for t in range(frames):  # Frame by frame: no float64 [T, ...] temporary.
    f = rng.standard_normal((h, w, c), dtype=np.float32)
    feats[t] = f / np.linalg.norm(f, axis=-1, keepdims=True)
  labels0 = np.eye(k, dtype=np.float32)[rng.integers(0, k, (h, w))]
  return feats, labels0


def load_reference(reference_dir):
  """Imports videowalk's `utils` and `utils.test_utils` from a checkout.

  Their module-level imports that the propagation code never uses are
  stubbed. Returns (utils, test_utils).
  """
  code = os.path.join(reference_dir, "code")
  stubs = ["matplotlib", "matplotlib.cm", "matplotlib.pyplot", "imageio",
           "visdom", "torchvision", "torchvision.transforms", "resnet",
           "sklearn", "sklearn.decomposition", "skimage"]
  for name in stubs:
    if name not in sys.modules:
      try:
        __import__(name)
      except ImportError:
        sys.modules[name] = module_stubs.stub(name)
  for sub in ("arguments", "visualize", "augs"):  # Unused submodules.
    sys.modules.setdefault("utils." + sub, types.ModuleType("utils." + sub))
  spec = importlib.util.spec_from_file_location(
      "utils", os.path.join(code, "utils", "__init__.py"),
      submodule_search_locations=[os.path.join(code, "utils")])
  utils = importlib.util.module_from_spec(spec)
  sys.modules["utils"] = utils
  spec.loader.exec_module(utils)
  spec = importlib.util.spec_from_file_location(
      "utils.test_utils", os.path.join(code, "utils", "test_utils.py"))
  test_utils = importlib.util.module_from_spec(spec)
  sys.modules["utils.test_utils"] = test_utils
  spec.loader.exec_module(test_utils)
  return utils, test_utils


def reference_propagate(utils, test_utils, feats, labels0, *, topk, radius,
                        context, temperature, long_mem=(0,)):
  """The propagation of videowalk `code/test.py:100-148`, on CPU.

  Args:
    utils, test_utils: from `load_reference`.
    feats: float32 [T, h, w, C] L2-normalised features.
    labels0: float32 [h, w, K] frame-0 labels.
    topk, radius, context, temperature: `--topk --radius --videoLen
      --temperature`.
    long_mem: `--long-mem`.

  Returns:
    float32 [T, h, w, K]: the `pred` of each frame (frame 0: the labels).
  """
  import torch  # pylint: disable=g-import-not-at-top
  long_mem = list(long_mem)
  n_context = context
  # `vos.py:138-156`: front-pad with n_context copies of frame 0 (features
  # and labels); `test.py:77-86` gives feats [1, C, N, h, w].
  pad_idx = [max(0, i - n_context) for i in range(len(feats) + n_context)]
  feats = torch.from_numpy(np.ascontiguousarray(
      feats[pad_idx].transpose(3, 0, 1, 2)))[None]
  lbls = torch.from_numpy(np.ascontiguousarray(
      np.broadcast_to(labels0, (len(pad_idx),) + labels0.shape)))[None]
  n = feats.shape[2]
  # test.py:103-126 verbatim except prints.
  key_indices = test_utils.context_index_bank(n_context, long_mem,
                                              n - n_context)
  key_indices = torch.cat(key_indices, dim=-1)
  keys, query = feats[:, :, key_indices], feats[:, :, n_context:]
  restrict = utils.MaskedAttention(radius, flat=False)
  d = restrict.mask(*feats.shape[-2:])[None]
  d = d.flatten(-4, -3).flatten(-2)
  d[d == 0] = -1e10
  d[d == 1] = 0
  keys, query = keys.flatten(-2), query.flatten(-2)
  ws, is_ = test_utils.mem_efficient_batched_affinity(
      query, keys, d, temperature, topk, long_mem, "cpu")
  # test.py:129-148.
  lbls = lbls.clone()
  lbls[0, n_context:] *= 0
  lbls = lbls[0]
  preds = []
  for t in range(key_indices.shape[0]):
    ctx_lbls = lbls[key_indices[t]]
    ctx_lbls = ctx_lbls.flatten(0, 2).transpose(0, 1)
    pred = (ctx_lbls[:, is_[t]] * ws[t][None]).sum(1)
    pred = pred.view(-1, *feats.shape[-2:])
    pred = pred.permute(1, 2, 0)
    if t > 0:
      lbls[t + n_context] = pred
    else:
      pred = lbls[0]
      lbls[t + n_context] = pred
    preds.append(pred.numpy().copy())
  return np.stack(preds)


def _child(args):
  """Runs one measurement; prints one JSON line."""
  feats, labels0 = make_inputs(args.child_frames, args.height, args.width,
                               args.child_channels, args.classes)
  base = _rss_mib()
  kw = dict(topk=args.topk, radius=args.radius, context=args.context,
            temperature=args.temperature)
  rec = {}
  if args.child == "ours":
    sys.path.insert(0, REPO)
    import jax  # pylint: disable=g-import-not-at-top
    # pylint: disable-next=g-import-not-at-top
    from corrjax.evals import label_propagation
    feats = jax.device_put(feats)  # Inputs on the device before `base`.
    jax.block_until_ready(feats)
    base = _rss_mib()
    fn = lambda: jax.block_until_ready(label_propagation.propagate(
        feats, labels0, query_chunk=args.query_chunk, block=args.block,
        impl=args.impl, **kw))
    rec["load_before"] = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = np.asarray(fn())
    rec["first_call_s"] = rec["time_s"] = time.perf_counter() - t0
    if not args.no_warmup:
      rec["load_before"] = os.getloadavg()[0]
      t0 = time.perf_counter()
      out = np.asarray(fn())
      rec["time_s"] = time.perf_counter() - t0
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())
    utils, test_utils = load_reference(args.reference_dir)
    base = _rss_mib()
    rec["load_before"] = os.getloadavg()[0]
    t0 = time.perf_counter()
    with torch.no_grad():
      out = reference_propagate(utils, test_utils, feats, labels0, **kw)
    rec["time_s"] = time.perf_counter() - t0
  if args.save:
    np.save(args.save, out)
  rec["load_after"] = os.getloadavg()[0]
  rec.update(method=args.child, frames=args.child_frames,
             channels=args.child_channels, input_mib=feats.nbytes / 2**20,
             base_rss_mib=base,
             peak_rss_mib=_peak_rss_mib(),
             fps=(args.child_frames - 1) / rec["time_s"])
  print(json.dumps(rec), flush=True)


def _run(args, method, frames, channels, save=None):
  cmd = [sys.executable, os.path.abspath(__file__), f"--child={method}",
         f"--child_frames={frames}", f"--child_channels={channels}"]
  for name in ("height", "width", "classes", "topk", "radius", "context",
               "temperature", "query_chunk", "block", "impl",
               "reference_dir"):
    cmd.append(f"--{name}={getattr(args, name)}")
  if save:
    cmd.append(f"--save={save}")
  if method == "ours" and frames == args.long_frames and args.no_warmup:
    cmd.append("--no_warmup")
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if res.returncode:
    raise RuntimeError(f"{method} failed:\n{res.stderr[-3000:]}")
  rec = json.loads(res.stdout.strip().splitlines()[-1])
  print(json.dumps(rec), flush=True)
  return rec


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--height", type=int, default=60)
  p.add_argument("--width", type=int, default=107)
  p.add_argument("--channels", default="256,1280")
  p.add_argument("--classes", type=int, default=3)
  p.add_argument("--frames", type=int, default=8,
                 help="video length for the ours-vs-reference comparison")
  p.add_argument("--long_frames", type=int, default=100,
                 help="long video, ours only (0: skip)")
  p.add_argument("--topk", type=int, default=10)
  p.add_argument("--radius", type=float, default=12.0)
  p.add_argument("--context", type=int, default=20)
  p.add_argument("--temperature", type=float, default=0.05)
  p.add_argument("--query_chunk", type=int, default=256)
  p.add_argument("--block", type=int, default=4)
  p.add_argument("--impl", default="auto", help="blocked, dense or auto")
  p.add_argument("--pairs", type=int, default=3,
                 help="interleaved ours/reference pairs per C")
  p.add_argument("--no_warmup", action="store_true",
                 help="long video: one call, time includes compilation")
  p.add_argument("--reference_dir", default="")
  p.add_argument("--out", default="", help="append JSON lines here")
  p.add_argument("--child", default="", help=argparse.SUPPRESS)
  p.add_argument("--child_frames", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--child_channels", type=int, default=0,
                 help=argparse.SUPPRESS)
  p.add_argument("--save", default="", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    _child(args)
    return
  print(f"nproc={os.cpu_count()} load={os.getloadavg()}", flush=True)
  records, tables = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for c in [int(x) for x in args.channels.split(",")]:
      pairs = []
      for i in range(args.pairs if args.reference_dir else 1):
        ours_path = os.path.join(tmp, f"ours{c}.npy")
        ours = _run(args, "ours", args.frames, c, ours_path)
        ours["pair"] = i
        records.append(ours)
        if not args.reference_dir:
          continue
        ref_path = os.path.join(tmp, f"ref{c}.npy")
        ref = _run(args, "reference", args.frames, c, ref_path)
        ref["pair"] = i
        ref["max_abs_diff_vs_ours"] = float(
            np.abs(np.load(ours_path) - np.load(ref_path)).max())
        ref["fps_ratio_ours_over_ref"] = ours["fps"] / ref["fps"]
        ref["peak_rss_ratio_ours_over_ref"] = (ours["peak_rss_mib"] /
                                               ref["peak_rss_mib"])
        print(json.dumps(ref), flush=True)
        records.append(ref)
        pairs.append((ours, ref))
      if pairs:
        tables.append(pair_table(c, pairs))
      if args.long_frames:
        records.append(_run(args, "ours", args.long_frames, c))
  for table in tables:
    print(table)
  if args.out:
    with open(args.out, "a") as f:
      for r in records:
        f.write(json.dumps(dict(r, args=vars(args))) + "\n")


def pair_table(c, pairs):
  """Markdown rows of interleaved pairs and the median / range of ratios."""
  rows = [f"C = {c}: | pair | ours frames/s | reference frames/s | ratio | "
          "load (ours; ref: before/after) | peak RSS ours/ref MiB | "
          "max abs diff |", "|---|---|---|---|---|---|---|"]
  ratios = []
  for ours, ref in pairs:
    ratios.append(ref["fps_ratio_ours_over_ref"])
    rows.append(
        f"| {ours['pair'] + 1} | {ours['fps']:.3f} | {ref['fps']:.4f} | "
        f"{ratios[-1]:.1f}x | {ours['load_before']:.1f}/"
        f"{ours['load_after']:.1f}; {ref['load_before']:.1f}/"
        f"{ref['load_after']:.1f} | {ours['peak_rss_mib']:.0f}/"
        f"{ref['peak_rss_mib']:.0f} | {ref['max_abs_diff_vs_ours']:.1e} |")
  rows.append(f"median ratio {np.median(ratios):.1f}x, range "
              f"{min(ratios):.1f}x - {max(ratios):.1f}x over {len(ratios)} "
              "interleaved pairs")
  return "\n".join(rows)


if __name__ == "__main__":
  main()
