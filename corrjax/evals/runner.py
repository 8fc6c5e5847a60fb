"""Runs the configured benchmarks on the networks it is given.

The runner knows benchmarks (evals/benchmarks.py), protocols
(evals/protocol.py) and networks (evals/network.py), nothing about methods
or training: `corrjax.networks` resolves what to evaluate and hands it over.

Results of one benchmark, network, protocol and predictor settings (e.g.
Mask-VOS's refinement rounds) go to their own folder,

  <workdir>/eval/<benchmark>/<step_<n> | random_init | fused[_step_<n>]>-<hash>/

holding `protocol.json`, the predictions in the DAVIS results layout
(`<video>/%05d.png`), `overlays/<video>.png`, the official CSVs and
`results.json`; `<workdir>/eval/<benchmark>/latest` points at the newest
folder of the main network. A different protocol (topk, radius, videos,
fusion, ...) therefore never overwrites earlier results; the same protocol
resumes (finished videos are read back, evals/vos.py).
"""

from collections.abc import Callable, Sequence
import json
import os

import numpy as np
from PIL import Image

from corrjax.evals import benchmarks
from corrjax.evals import davis_results
from corrjax.evals import network as network_lib
from corrjax.evals import parsing
from corrjax.evals import pose
from corrjax.evals import protocol as protocol_lib
from corrjax.evals import vos

# Benchmark config entries that change results (besides the protocol).
_RESULT_KEYS = ("source", "root", "split", "videos", "split_file", "sigma",
                "synthetic", "fusion", "predictor")


def format_table(rows: dict[str, dict]) -> str:
  """Rows of {column: value} as an aligned text table."""
  columns = list(next(iter(rows.values())))
  lines = [f"{'':<16}" + "".join(f"{c:>10}" for c in columns)]
  for name, r in rows.items():
    lines.append(f"{name:<16}" + "".join(f"{r[c]:>10.4f}" for c in columns))
  return "\n".join(lines)


def results_folder(bench, label: str, step: int | None,
                   predictor_settings=None) -> str:
  """`<label>[_step<n>]-<hash>`: the hash covers protocol, reader and the
  network's own predictor settings (network.Network.predictor_settings)."""
  proto = protocol_lib.Propagation.from_config(bench)
  reader = {k: v for k, v in bench.to_dict().items() if k in _RESULT_KEYS}
  if label == "trained" and step is not None:
    name = f"step_{step}"
  elif label == "random_init" or step is None:
    name = label
  else:
    name = f"{label}_step_{step}"
  parts = (proto.as_dict(), reader)
  if predictor_settings:  # Networks without them keep their old folders.
    parts += (dict(predictor_settings),)
  return f"{name}-{protocol_lib.short_hash(*parts)}"


def _point_latest(bench_dir: str, folder: str) -> None:
  link = os.path.join(bench_dir, "latest")
  try:
    if os.path.islink(link) or os.path.exists(link):
      os.remove(link)
    os.symlink(folder, link)
  except OSError:  # No symlinks here: a text file says the same.
    with open(link, "w") as f:
      f.write(folder + "\n")


def _score(name: str, bench, proto, videos, net, out_dir: str, log
           ) -> dict:
  """One network on one benchmark: {'table': row, 'result': raw result}."""
  source = bench.source
  if source in ("jhmdb", "vip") and proto.kind != "crw":
    raise ValueError(f"{name}: protocol {proto.kind!r} is for VOS "
                     f"benchmarks; {source} uses 'crw'.")
  if source in ("jhmdb", "vip") and net.features is None:
    raise ValueError(f"{name}: network {net.label!r} has no features for "
                     f"{source} (label propagation).")
  if source == "jhmdb":
    result = pose.evaluate(videos, net.features, stride=net.stride,
                           sigma=bench.sigma, log=log, **proto.as_dict())
    return {"table": {f"PCK@{a}": v for a, v in result["pck"].items()},
            "result": result}
  if source == "vip":
    result = parsing.evaluate(videos, net.features, stride=net.stride,
                              log=log, **proto.as_dict())
    return {"table": {"mIoU": result["mIoU"]}, "result": result}
  result = vos.evaluate(
      videos, net, proto, out_dir=out_dir if bench.write_pngs else None,
      overlay_frames=bench.overlay_frames, log=log)
  davis_results.write_csvs(result, out_dir, bench.split)
  row = result["global"]
  return {"table": {"J&F": row["J&F-Mean"], "J": row["J-Mean"],
                    "F": row["F-Mean"]}, "result": result}


def evaluate(evals, networks_for: Callable[[str], Sequence[
    network_lib.Network]], workdir: str, *, step: int | None = None,
             data_root: str = "", log: Callable[[str], None] = print,
             writer=None) -> dict:
  """Scores every benchmark of `evals` on the networks `networks_for`
  returns for it.

  Args:
    evals: `config.evals`, {benchmark name: benchmark config}.
    networks_for: benchmark name -> the networks to score (the first is
      the main one, whose folder `latest` points at).
    workdir: results go to `<workdir>/eval/<benchmark>/...`.
    step: the main network's training step (None: not a training run).
    data_root: default root of benchmarks with an empty `root`.
    log: progress and tables.
    writer: optional clu metric writer; gets `eval/<benchmark>/<label>/
      <metric>` scalars at `step` and the first overlay as an image.

  Returns:
    {benchmark: {network label: {"table": {...}, "result": ...,
    "folder": path}}}.
  """
  everything = {}
  for name, bench in evals.items():
    nets = list(networks_for(name))
    videos = benchmarks.read_videos(bench, data_root)
    proto = protocol_lib.Propagation.from_config(bench)
    log(f"{name}: {len(videos)} videos, {bench.source}, protocol "
        + ", ".join(f"{k} {v}" for k, v in proto.as_dict().items()))
    bench_dir = os.path.join(workdir, "eval", name)
    results = {}
    for i, net in enumerate(nets):
      folder = results_folder(bench, net.label, step, net.predictor_settings)
      out_dir = os.path.join(bench_dir, folder)
      os.makedirs(out_dir, exist_ok=True)
      with open(os.path.join(out_dir, "protocol.json"), "w") as f:
        json.dump({"benchmark": name, "network": net.label, "step": step,
                   **bench.to_dict(),
                   "predictor_settings": net.predictor_settings},
                  f, indent=2, default=str)
      log(f"{name} / {net.label}: results in {out_dir}")
      scored = _score(name, bench, proto, videos, net, out_dir, log)
      scored["folder"] = out_dir
      with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(scored["table"], f, indent=2)
      if i == 0:
        _point_latest(bench_dir, folder)
      results[net.label] = scored
      if writer is not None:
        _write_summaries(writer, name, net.label, scored, step or 0)
    log(f"{name}:\n" + format_table({k: r["table"]
                                     for k, r in results.items()}))
    everything[name] = results
  if writer is not None:
    writer.flush()
  return everything


def _write_summaries(writer, bench: str, label: str, scored: dict,
                     step: int) -> None:
  writer.write_scalars(step, {f"eval/{bench}/{label}/{k}": v
                              for k, v in scored["table"].items()})
  overlays = scored["result"].get("overlays")
  if overlays and os.path.isfile(overlays[0]):
    with Image.open(overlays[0]) as image:
      picture = np.asarray(image.convert("RGB"))
    writer.write_images(step, {f"eval/{bench}/{label}/overlay":
                               picture[None]})
