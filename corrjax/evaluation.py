"""Label-propagation evaluation of a trained state: videos in, J&F out."""

import json
import os

import jax
import ml_collections
import numpy as np
import optax

from corrjax import methods
from corrjax import pretrained
from corrjax.data import synthetic
from corrjax.evals import davis_data
from corrjax.evals import davis_results
from corrjax.evals import features
from corrjax.evals import parsing
from corrjax.evals import pose
from corrjax.evals import tfds_davis
from corrjax.evals import vos


def eval_videos(config: ml_collections.ConfigDict) -> list[vos.Video]:
  """The videos named by `config.eval` (held out from training)."""
  e = config.eval
  if e.source == "synthetic":
    s = e.synthetic
    videos = [vos.Video(v.name, v.frames, v.masks.astype(np.int32))
              for v in synthetic.make_videos(
                  s.seed, num_videos=s.num_videos, num_frames=s.num_frames,
                  height=s.height, width=s.width, max_objects=s.max_objects,
                  name_offset=100_000)]
  elif e.source == "davis":
    root = e.root or config.data.root
    names = davis_data.sequence_names(root, e.split)
    if e.max_videos:
      names = names[:e.max_videos]
    return [davis_data.read_video(root, n) for n in names]
  elif e.source == "tfds_davis":
    # tensorflow-datasets' `davis` (prepared; root = data_dir, e.g. gs://).
    return tfds_davis.load_videos(split=e.split, config="480p",
                                  data_dir=e.root or None,
                                  max_videos=e.max_videos or None)
  elif e.source == "vip":
    return parsing.read_videos(e.root or config.data.root, e.max_videos)
  elif e.source == "jhmdb":
    return pose.read_videos(e.root or config.data.root, e.split_file,
                            e.max_videos)
  else:
    raise ValueError(f"Unknown eval.source {e.source!r}; expected "
                     "'synthetic', 'davis', 'tfds_davis', 'jhmdb', 'vip' or "
                     "'none'.")
  return videos[:e.max_videos] if e.max_videos else videos


def format_table(rows: dict[str, dict]) -> str:
  """Rows of {'J&F-Mean', 'J-Mean', 'F-Mean'} as an aligned text table."""
  lines = [f"{'':<16}{'J&F':>8}{'J':>8}{'F':>8}"]
  for name, r in rows.items():
    lines.append(f"{name:<16}{r['J&F-Mean']:>8.4f}{r['J-Mean']:>8.4f}"
                 f"{r['F-Mean']:>8.4f}")
  return "\n".join(lines)


def format_pck_table(rows: dict[str, dict]) -> str:
  """Rows of {column: value} (PCK@alpha, mIoU) as an aligned text table."""
  columns = list(next(iter(rows.values())))
  lines = [f"{'':<16}" + "".join(f"{c:>10}" for c in columns)]
  for name, r in rows.items():
    lines.append(f"{name:<16}" + "".join(f"{r[c]:>10.4f}" for c in columns))
  return "\n".join(lines)


def _network_feature_fn(config, variables, spec):
  e = config.eval
  return features.make_feature_fn(
      **spec, strides=e.strides, variables=variables,
      num_stages=e.num_stages, normalization_name=e.normalization,
      batch_size=e.batch_size)


THIS_RUN = "self"  # Fusion member checkpoint meaning "the evaluated net".


def check_fusion(config) -> None:
  """Fails fast (before any training) on a fusion member that cannot load.

  Raises:
    ValueError: a member without a checkpoint.
    FileNotFoundError: a checkpoint path that is not an encoder directory or
      a training workdir.
  """
  for name, member in (config.eval.get("fusion") or {}).items():
    if not member.checkpoint:
      raise ValueError(
          f"fusion member {name!r} has no checkpoint: set "
          f"--config.eval.fusion.{name}.checkpoint=<encoder dir from "
          f"corrjax.convert, or a training workdir> (or '{THIS_RUN}' for "
          "the network this run trains).")
    if member.checkpoint != THIS_RUN:
      pretrained.check_encoder_path(member.checkpoint)


def feature_function(config, variables):
  """frames -> per-cell features of the network(s) `config.eval` names.

  Without `config.eval.fusion`: the trunk `variables` of `config.method`.
  With it, one extractor per member {"checkpoint", "weight"}, late-fused
  (`features.fuse_feature_fns`); checkpoint 'self' is the network being
  evaluated (`variables`), others load an encoder directory or training
  workdir (`pretrained.load_encoder`).
  """
  spec = methods.get(config.method).encoder_spec(config)
  members = config.eval.get("fusion") or {}
  if not members:
    return _network_feature_fn(config, variables, spec)
  check_fusion(config)
  fns, weights = [], []
  for name, member in members.items():
    if member.checkpoint != THIS_RUN:
      member_variables, member_spec = pretrained.load_encoder(
          member.checkpoint)
    elif variables is None:
      raise ValueError(f"fusion member {name!r} is '{THIS_RUN}' but there "
                       "is no trained network in this run.")
    else:
      member_variables, member_spec = variables, spec
    fns.append(_network_feature_fn(config, member_variables, member_spec))
    weights.append(member.weight)
  return features.fuse_feature_fns(fns, weights)


def needs_own_network(config) -> bool:
  """False when every fusion member comes from its own checkpoint."""
  members = config.eval.get("fusion") or {}
  return not members or any(m.checkpoint == THIS_RUN
                            for m in members.values())


def evaluate_variables(config, variables, videos, out_dir, log=print):
  """Scores the network(s) of `config.eval` on `videos`.

  Args:
    variables: trunk {"params", "batch_stats"} of the evaluated network, or
      None when every fusion member has its own checkpoint.
  """
  e = config.eval
  feature_fn = feature_function(config, variables)
  if e.source == "jhmdb":
    return pose.evaluate(videos, feature_fn, topk=e.topk, radius=e.radius,
                         context=e.context, temperature=e.temperature,
                         crop_size=e.crop_size, sigma=e.sigma, log=log)
  if e.source == "vip":
    return parsing.evaluate(videos, feature_fn, topk=e.topk,
                            radius=e.radius, context=e.context,
                            temperature=e.temperature, crop_size=e.crop_size,
                            log=log)
  return vos.evaluate(videos, feature_fn, topk=e.topk, radius=e.radius,
                      context=e.context, temperature=e.temperature,
                      crop_size=e.crop_size,
                      out_dir=out_dir if e.write_pngs else None,
                      overlay_frames=e.overlay_frames, log=log)


def evaluate_state(config, state, workdir: str, log=print) -> dict | None:
  """Scores `state` (and optionally the random init) on `config.eval`.

  Writes `<workdir>/eval/step_<n>/<video>/%05d.png` (DAVIS results layout),
  `overlays/<video>.png`, the official `global_results-<split>.csv` and
  `per-sequence_results-<split>.csv`, and `results.json`; prints a J&F (or
  PCK) table.

  `state` may be None when every `config.eval.fusion` member has its own
  checkpoint; results then go to `<workdir>/eval/fused`.

  Returns:
    {"trained": summary[, "random_init": summary]} or None if disabled.
  """
  if config.eval.source == "none":
    return None
  method = methods.get(config.method)
  videos = eval_videos(config)
  e = config.eval
  log(f"evaluating label propagation on {len(videos)} videos "
      f"(topk {e.topk}, radius {e.radius}, context {e.context}, "
      f"temperature {e.temperature})")
  for name, member in (e.get("fusion") or {}).items():
    log(f"  fusing {name} x {member.weight}: "
        f"{member.checkpoint or 'the network of this run'}")
  if state is None:
    step, label, variables = 0, "fused", None
    out_dir = os.path.join(workdir, "eval", "fused")
  else:
    step = int(jax.device_get(state.step))
    label = "trained" if step else "random_init"
    variables = jax.device_get(method.encoder_variables(state))
    out_dir = os.path.join(workdir, "eval", f"step_{step}")
  dirs = {label: out_dir}
  results = {label: evaluate_variables(config, variables, videos, out_dir,
                                       log)}
  if config.eval.random_init_baseline and step:
    model = method.build_model(config)
    init = method.init_state(
        jax.random.key(config.seed), model=model,
        tx=optax.identity(), config=config)
    dirs["random_init"] = os.path.join(workdir, "eval", "random_init")
    results["random_init"] = evaluate_variables(
        config, method.encoder_variables(init), videos,
        dirs["random_init"], log)
  if config.eval.source == "jhmdb":
    summary = {name: {f"PCK@{a}": v for a, v in r["pck"].items()}
               for name, r in results.items()}
    log(format_pck_table(summary))
  elif config.eval.source == "vip":
    summary = {name: {"mIoU": r["mIoU"]} for name, r in results.items()}
    log(format_pck_table(summary))
  else:
    summary = {name: r["global"] for name, r in results.items()}
    log(format_table(summary))
    for name, r in results.items():  # The official tool's two CSVs.
      davis_results.write_csvs(r, dirs[name], config.eval.split)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  written = ("results.json" if config.eval.source in ("jhmdb", "vip") else
             "predictions, overlays, CSVs and results.json")
  log(f"{written} in {out_dir}")
  return results
