r"""Is label propagation stable under equally valid float paths? Ties.

Runs the reference propagation of `propagation.py` (videowalk's own
`context_index_bank`, `MaskedAttention`, `mem_efficient_batched_affinity`,
`code/utils/test_utils.py:123-171`, `code/utils/__init__.py:327-362`,
driven as `code/test.py:100-148`; imported at runtime from
`--reference_dir`, nothing copied) and ours on the same seeded inputs as
`propagation.py --frames=4 --channels=256`, along float paths that are all
valid float32 evaluations of the same sums:

* `ref_threads2`: torch with 2 threads (as the benchmark, os.cpu_count());
* `ref_threads1`: torch with 1 thread;
* `ref_reversed`: channels reversed in every feature (the same products,
  summed in another order);
* `ref_float64`: the reference's code on float64 features (exact to ~1e-16:
  the ground truth the float32 paths round);
* `ours_blocked`, `ours_blocked_reversed`, `ours_dense`.

Prints, for every pair, the max abs diff and the cells (t, y, x) that differ
by more than 1e-5; then for each such cell the exact (float64) ranking of
the distinct keys (source frame, cell) around the top-k boundary and the
gap between the last one kept and the first one left out, in float32 ulps.
A gap under an ulp or so is a tie that a float32 path may break either way.

  python benchmarks/propagation_ties.py --reference_dir=/tmp/videowalk
"""

import argparse
import itertools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import propagation  # pylint: disable=g-import-not-at-top,wrong-import-position

VARIANTS = ("ref_threads2", "ref_threads1", "ref_reversed", "ref_float64",
            "ours_blocked", "ours_blocked_reversed", "ours_dense")


def run_variant(name, feats, labels0, reference_dir, **kw):
  """float32 [T, h, w, K] outputs of one variant (see the module doc)."""
  if "reversed" in name:
    feats = np.ascontiguousarray(feats[..., ::-1])
  if name.startswith("ref"):
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(1 if name == "ref_threads1" else 2)
    utils, test_utils = propagation.load_reference(reference_dir)
    if name == "ref_float64":
      feats, labels0 = feats.astype(np.float64), labels0.astype(np.float64)
    with torch.no_grad():
      out = propagation.reference_propagate(utils, test_utils, feats,
                                            labels0, **kw)
    return out.astype(np.float32)
  sys.path.insert(0, propagation.REPO)
  # pylint: disable-next=g-import-not-at-top
  from corrjax.evals import label_propagation
  impl = "dense" if name == "ours_dense" else "blocked"
  return np.asarray(label_propagation.propagate(feats, labels0, impl=impl,
                                                **kw))


def boundary(feats, exact, cell, *, topk, radius, context, show=2):
  """Exact ranking of the distinct keys of one query around the top-k.

  Keys of target frame t (`code/test.py:103-126`): frame 0 (never
  restricted), then padded frames t .. t + context - 1 (frame
  max(0, i - context)) within the strict radius. Copies of one frame are
  one distinct key with a multiplicity. Similarities in float64 from the
  float32 features; labels from `exact` (the float64 run's outputs).

  Returns:
    (lines to print, gap between the last distinct key kept and the first
    left out, that gap in float32 ulps at the k-th similarity).
  """
  t, y, x = cell
  _, h, w, _ = feats.shape
  q = feats[t, y, x].astype(np.float64)
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  near = (np.sqrt(((yy - y) ** 2 + (xx - x) ** 2).astype(np.float32)) <
          np.float32(radius))
  keys = []  # (similarity, source frame, cell index, copies).
  sims0 = feats[0].reshape(-1, feats.shape[-1]).astype(np.float64) @ q
  short = [max(0, i - context) for i in range(t, t + context)]
  for src in sorted(set(short) | {0}):
    s = feats[src].reshape(-1, feats.shape[-1]).astype(np.float64) @ q
    n_short = short.count(src)
    for j in range(h * w):
      copies = n_short if near.ravel()[j] else 0
      copies += 1 if src == 0 else 0
      if copies:
        keys.append((s[j] if src else sims0[j], src, j, copies))
  keys.sort(key=lambda k: -k[0])
  ends = np.cumsum([k[3] for k in keys])  # Places taken after each key.
  b = int(np.searchsorted(ends, topk))  # The key holding the k-th place.
  gap = keys[b][0] - keys[b + 1][0]
  ulps = gap / float(np.spacing(np.float32(keys[b][0])))
  lines = []
  for r in range(max(0, b - show), min(len(keys), b + show + 1)):
    s, src, j, copies = keys[r]
    kept = int(min(copies, max(topk - (ends[r] - copies), 0)))
    label = exact[src].reshape(h * w, -1)[j]
    lines.append(f"  frame {src} cell {divmod(j, w)} x{copies} sim {s!r} "
                 f"kept {kept} label {np.array2string(label, precision=3)}")
  return lines, gap, ulps


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--reference_dir", required=True)
  p.add_argument("--frames", type=int, default=4)
  p.add_argument("--channels", type=int, default=256)
  p.add_argument("--height", type=int, default=60)
  p.add_argument("--width", type=int, default=107)
  p.add_argument("--classes", type=int, default=3)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--save_dir", default="",
                 help="save each variant's outputs here (and reuse them)")
  args = p.parse_args()
  kw = dict(topk=10, radius=12.0, context=20, temperature=0.05)
  feats, labels0 = propagation.make_inputs(args.frames, args.height,
                                           args.width, args.channels,
                                           args.classes)
  outs = {}
  for name in args.variants.split(","):
    path = os.path.join(args.save_dir, name + ".npy") if args.save_dir else ""
    if path and os.path.exists(path):
      outs[name] = np.load(path)
      continue
    t0 = time.perf_counter()
    outs[name] = run_variant(name, feats, labels0, args.reference_dir, **kw)
    print(f"{name}: {time.perf_counter() - t0:.0f} s, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    if path:
      np.save(path, outs[name])
  cells = set()
  for a, b in itertools.combinations(outs, 2):
    d = np.abs(outs[a] - outs[b]).max(-1)
    bad = [tuple(int(v) for v in c) for c in np.argwhere(d > 1e-5)]
    cells.update(bad)
    print(f"{a} vs {b}: max abs diff {d.max():.1e}, cells > 1e-5: {bad}")
  if "ref_float64" not in outs:
    return
  for cell in sorted(cells):
    print(f"cell {cell}: " + ", ".join(
        f"{n} {np.array2string(o[cell], precision=4)}"
        for n, o in outs.items()))
    lines, gap, ulps = boundary(feats, outs["ref_float64"], cell,
                                topk=kw["topk"], radius=kw["radius"],
                                context=kw["context"])
    print("\n".join(lines))
    print(f"  exact gap at the top-{kw['topk']} boundary: {gap!r} "
          f"({ulps:.2f} float32 ulps)")


if __name__ == "__main__":
  main()
