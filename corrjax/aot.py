r"""Compiles the real train step for a TPU topology on this (CPU) machine.

Builds the mesh and state shardings exactly as `corrjax.train` does (from
`config.mesh` and `config.sharding_rules`, via `train.abstract_state` and
`train.make_train_step`), lowers the step on abstract arrays of the global
batch, compiles it with libtpu for the topology's compile-only devices, and
prints per chip: state and batch bytes, XLA's temporaries, the total against
the chip's HBM, FLOPs per step, the collectives in the compiled HLO, and the
step time expected at a stated MFU. Needs `pip install corrjax[tpu]`
(libtpu); no TPU is used.

  python -m corrjax.aot --config=configs/fc.py --topology=v5e:4x4
  python -m corrjax.aot --config=configs/moco.py --topology=v5e:16x16 \
      --config.data.batch_size=4096 \
      --config.sharding_rules="(('extra/queue', ('data', None)),)"
  python -m corrjax.aot --config=configs/crw.py --topology=v4:2x2x4 \
      --num_slices=2 --json=/tmp/aot.jsonl
  python -m corrjax.aot --table=/tmp/aot.jsonl   # markdown rows

Topology names are libtpu's `<chip>:<shape>`: v5e:2x2 (4 chips), v5e:4x4
(v5e-16), v5e:16x16 (v5e-256), v4:2x2x4 (v4-64: 32 chips, 2 cores each),
v5p:2x2x4, v6e:4x4. Exit status 1 with one line when the global batch does
not divide over the chips or the step does not fit in HBM.
"""

import dataclasses
import json
import os
import re
import sys

# libtpu warns when it cannot find a TPU host; nothing here needs one.
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
# Compile-only devices touch no TPU: let several compiles run at once
# (otherwise libtpu's /tmp/libtpu_lockfile admits one process).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from corrjax import cli_flags  # pylint: disable=g-import-not-at-top

_CONFIG = cli_flags.config_file_flag()
_TOPOLOGY = flags.DEFINE_string("topology", "v5e:4x4",
                                "libtpu topology, e.g. v5e:16x16, v4:2x2x4.")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1,
                                   "Slices joined over DCN (multislice).")
_MFU = flags.DEFINE_float("mfu", 0.4, "MFU assumed for the step time.")
_JSON = flags.DEFINE_string("json", None, "Append one JSON line here.")
_HLO = flags.DEFINE_string("dump_hlo", None, "Write the compiled HLO here.")
_LOWER_ONLY = flags.DEFINE_bool(
    "lower_only", False, "Lower without compiling: FLOPs and state/batch "
    "bytes in seconds; no temporaries, total or collectives.")
_TABLE = flags.DEFINE_string(
    "table", None, "Print the markdown table of a --json file and exit.")


@dataclasses.dataclass(frozen=True)
class Chip:
  """Per-chip HBM and dense bf16 peak (f32 matmuls run as bf16 passes)."""
  hbm_gib: float
  peak_tflops: float


# Keyed by `device_kind` (Google Cloud TPU docs, per chip).
CHIPS = {"TPU v4": Chip(32, 275.0), "TPU v5 lite": Chip(16, 197.0),
         "TPU v5": Chip(95, 459.0), "TPU v6 lite": Chip(32, 918.0)}

# Collective ops whose result bytes are summed (async '-start' forms too).
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
                "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
                "f64": 8, "c64": 8, "c128": 16}
_SHAPE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s(" + "|".join(COLLECTIVES) +
    r")(-start)?\(")
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")


class AotError(ValueError):
  """A one-line reason the step cannot run on the topology."""


def topology_devices(topology: str, num_slices: int = 1) -> list:
  """Compile-only TPU devices of `topology` (libtpu, no TPU needed)."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  kwargs = {"num_slices": num_slices} if num_slices > 1 else {}
  try:
    desc = topologies.get_topology_desc(topology_name=topology,
                                        platform="tpu", **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    raise AotError(f"topology {topology!r}: {_first_line(e)}") from e
  return list(desc.devices)


def first_synthetic_batch(config: ml_collections.ConfigDict) -> dict:
  """The first global batch the method's own pipeline yields for `config`
  with its data source switched to the embedded synthetic videos.

  Returns:
    {name: np.ndarray}, the arrays of `method.make_batches` (e.g. LIIR's
    frame pairs, Mask-VOS's clips with masks).
  """
  from corrjax import methods  # pylint: disable=g-import-not-at-top
  probe = ml_collections.ConfigDict(config.to_dict())
  if "source" in probe.data:
    probe.data.source = "synthetic"
  batches, _ = methods.get(config.method).make_batches(probe, start_step=0)
  return {k: np.asarray(v) for k, v in next(iter(batches)).items()}


def batch_spec(config: ml_collections.ConfigDict) -> dict:
  """Global-batch shapes of the config's method, as its pipeline yields.

  Returns:
    {name: jax.ShapeDtypeStruct} without sharding: two-view methods
    {"view1", "view2": uint8 [B, S, S, 3]} (+ FC's "box1", "box2": float32
    [B, 4]); CRW {"patches": uint8 [B, T, N, P, P, 3]}; other methods (LIIR,
    Mask-VOS): the shapes of the first batch their pipeline yields for a
    synthetic source (one global batch is built on this host).
  """
  d = config.data
  b = d.batch_size
  if config.method not in ("crw", "fine_grained", "moco", "byol"):
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
            for k, v in first_synthetic_batch(config).items()}
  if config.method == "crw":
    grid = (d.crop_size - d.patch_size) // d.patch_stride + 1
    return {"patches": jax.ShapeDtypeStruct(
        (b, d.clip_len, grid * grid, d.patch_size, d.patch_size, 3),
        np.uint8)}
  view = jax.ShapeDtypeStruct((b, d.crop_size, d.crop_size, 3), np.uint8)
  spec = {"view1": view, "view2": view}
  if config.method == "fine_grained":
    box = jax.ShapeDtypeStruct((b, 4), np.float32)
    spec.update(box1=box, box2=box)
  return spec


def compile_train_step(config: ml_collections.ConfigDict, devices: list,
                       *, lower_only: bool = False):
  """Lowers and compiles the train step of `config` for `devices`.

  Returns:
    (compiled, abstract state with shardings, abstract batch, mesh); with
    `lower_only`, the jitted step instead of the compiled one.
  """
  # pylint: disable=g-import-not-at-top
  from corrjax import methods
  from corrjax import optim
  from corrjax import sharding
  from corrjax import train
  # pylint: enable=g-import-not-at-top
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes, devices)
  n = mesh.shape[sharding.DATA_AXIS]
  if config.data.batch_size % n:
    raise AotError(
        f"global batch {config.data.batch_size} does not divide over the "
        f"{n} chips of the {sharding.DATA_AXIS!r} axis; use a multiple of "
        f"{n}, e.g. --config.data.batch_size="
        f"{-(-config.data.batch_size // n) * n}.")
  model = methods.get(config.method).build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state_abs = train.abstract_state(config, mesh, model, tx)
  state_sh = jax.tree_util.tree_map(lambda a: a.sharding, state_abs)
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  batch_sh = sharding.batch_sharding(mesh)
  batch_abs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh)
               for k, v in batch_spec(config).items()}
  if lower_only:
    return step, state_abs, batch_abs, mesh
  try:
    compiled = step.lower(state_abs, batch_abs).compile()
  except Exception as e:  # pylint: disable=broad-except
    message = str(e)
    if "RESOURCE_EXHAUSTED" in message or "out of memory" in message.lower():
      raise AotError("the step does not fit in HBM: "
                     f"{_memory_line(message)}") from e
    raise
  return compiled, state_abs, batch_abs, mesh


def per_chip_bytes(tree) -> int:
  """Bytes of one chip's shards of a pytree of sharded ShapeDtypeStructs."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding else (
        leaf.shape)
    total += int(np.prod(shape)) * np.dtype(leaf.dtype).itemsize
  return total


def collectives(hlo_text: str) -> dict:
  """{op: {"count", "bytes", "channels", "channel_bytes"}} of the
  collectives in compiled HLO text.

  Bytes are the op's result (per chip); an async '-start' counts once.
  `channels` counts distinct channel ids and `channel_bytes` counts each
  once: XLA's TPU async-collective fusion clones one collective into many
  fusions that share its channel id (LIIR's queue update: one 8 MiB
  all-gather, 95 clones), and whether each clone moves its bytes is not
  visible in the HLO text.
  """
  found = {}
  for number, line in enumerate(hlo_text.splitlines()):
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    result_type, op, is_start = match.groups()
    shapes = [(_DTYPE_BYTES[t], dims) for t, dims in _SHAPE.findall(
        re.sub(r"/\*.*?\*/", "", result_type))]
    if is_start and op != "all-reduce" and len(shapes) > 1:
      shapes = shapes[len(shapes) // 2:]  # (operands, results) tuples.
    nbytes = sum(size * int(np.prod([int(x) for x in dims.split(",") if x]))
                 for size, dims in shapes)
    channel = _CHANNEL.search(line)
    entry = found.setdefault(op, {"count": 0, "bytes": 0, "by_channel": {}})
    entry["count"] += 1
    entry["bytes"] += nbytes
    key = channel.group(1) if channel else f"line {number}"
    entry["by_channel"][key] = max(entry["by_channel"].get(key, 0), nbytes)
  for entry in found.values():
    by_channel = entry.pop("by_channel")
    entry["channels"] = len(by_channel)
    entry["channel_bytes"] = sum(by_channel.values())
  return found


def global_cost(jitted_step, state, batch) -> dict:
  """XLA's cost analysis of the whole (unpartitioned) step, on this host.

  libtpu's compile-only client has no cost model for a merely lowered
  program, so the step's function is lowered for the default (CPU) backend
  without shardings.
  """
  strip = lambda tree: jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
  fn = jitted_step.__wrapped__
  return jax.jit(fn).lower(strip(state), strip(batch)).cost_analysis()


def analyse(config: ml_collections.ConfigDict, topology: str,
            num_slices: int = 1, *, mfu: float = 0.4,
            hlo_path: str | None = None, lower_only: bool = False) -> dict:
  """Compiles the step for the topology; per-chip memory, FLOPs, comms.

  With `lower_only` nothing is compiled (seconds instead of minutes): FLOPs
  are the lowered global program's divided by the chips, state and batch
  bytes come from the shardings, and temporaries, total and collectives are
  None.
  """
  devices = topology_devices(topology, num_slices)
  step, state, batch, mesh = compile_train_step(config, devices,
                                                lower_only=lower_only)
  kind = devices[0].device_kind
  chip = CHIPS.get(kind)
  cost = global_cost(step, state, batch) if lower_only else (
      step.cost_analysis())
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  flops = float(cost.get("flops", float("nan")))
  r = {
      "config": config.method, "topology": topology,
      "num_slices": num_slices, "device_kind": kind, "chips": len(devices),
      "mesh": dict(mesh.shape), "global_batch": config.data.batch_size,
      "batch_per_chip": config.data.batch_size // len(devices),
      "sharding_rules": [list(map(str, r)) for r in config.sharding_rules],
      "params_bytes": per_chip_bytes((state.params, state.batch_stats)),
      "target_bytes": per_chip_bytes((state.target_params,
                                      state.target_batch_stats)),
      "opt_state_bytes": per_chip_bytes(state.opt_state),
      "extra_bytes": per_chip_bytes(state.extra),
      "batch_bytes": per_chip_bytes(batch),
      "hbm_bytes": int(chip.hbm_gib * 2**30) if chip else None,
      "lower_only": lower_only,
      # Compiled: XLA's count for one chip's partition of the program.
      "flops_per_chip": flops / len(devices) if lower_only else flops,
      "mfu": mfu,
      "peak_tflops": chip.peak_tflops if chip else None,
      "argument_bytes": None, "temp_bytes": None, "code_bytes": None,
      "total_bytes": None, "collectives": None,
  }
  r["step_s_at_mfu"] = (r["flops_per_chip"] / (chip.peak_tflops * 1e12 * mfu)
                        if chip else None)
  if lower_only:
    return r
  mem = step.memory_analysis()
  text = step.as_text()
  if hlo_path:
    with open(hlo_path, "w") as f:
      f.write(text)
  r.update(
      argument_bytes=mem.argument_size_in_bytes,
      temp_bytes=mem.temp_size_in_bytes,
      code_bytes=mem.generated_code_size_in_bytes,
      total_bytes=(mem.argument_size_in_bytes + mem.output_size_in_bytes -
                   mem.alias_size_in_bytes + mem.temp_size_in_bytes +
                   mem.generated_code_size_in_bytes),
      bytes_accessed_per_chip=float(cost.get("bytes accessed", 0.0)),
      collectives=collectives(text))
  if chip and r["total_bytes"] > r["hbm_bytes"]:
    raise AotError(f"the step does not fit: {_gib(r['total_bytes'])} GiB per "
                   f"chip > {chip.hbm_gib} GiB HBM of {kind} (global batch "
                   f"{config.data.batch_size}).")
  return r


def format_report(r: dict) -> str:
  """Human-readable lines of `analyse`'s result."""
  mib = lambda b: "n/a (--lower_only)" if b is None else (
      f"{b / 2**20:.1f} MiB")
  comms = "n/a (--lower_only)" if r["collectives"] is None else (
      ", ".join(f"{op} x{c['count']} {mib(c['bytes'])}" + (
          f" ({c['channels']} channel id(s): {mib(c['channel_bytes'])})"
          if c.get("channels", c["count"]) < c["count"] else "")
                for op, c in sorted(r["collectives"].items())) or "none")
  hbm = (f" of {r['hbm_bytes'] / 2**30:.0f} GiB HBM "
         f"({r['total_bytes'] / r['hbm_bytes']:.1%})"
         if r["hbm_bytes"] and r["total_bytes"] else "")
  step = (f"{r['step_s_at_mfu'] * 1e3:.1f} ms at {r['mfu']:.0%} MFU of "
          f"{r['peak_tflops']:.0f} TFLOP/s" if r["step_s_at_mfu"] else "n/a")
  flops = r["flops_per_chip"]
  return "\n".join([
      f"{r['config']} on {r['topology']} x{r['num_slices']} slice(s): "
      f"{r['chips']} x {r['device_kind']}, mesh {r['mesh']}, global batch "
      f"{r['global_batch']} ({r['batch_per_chip']} per chip)",
      "per chip:",
      f"  params + BN stats   {mib(r['params_bytes'])}",
      f"  EMA/momentum target {mib(r['target_bytes'])}",
      f"  optimizer state     {mib(r['opt_state_bytes'])}",
      f"  extra (e.g. queue)  {mib(r['extra_bytes'])}",
      f"  batch               {mib(r['batch_bytes'])}",
      f"  temporaries         {mib(r['temp_bytes'])}",
      f"  total               {mib(r['total_bytes'])}{hbm}",
      f"  FLOPs per step      {flops / 1e9:.1f} GFLOP (x{r['chips']} chips "
      f"= {flops * r['chips'] / 1e12:.2f} TFLOP)",
      f"  step time           {step}",
      f"  collectives         {comms}",
  ])


TABLE_HEADER = (
    "| config | topology | chips | batch (per chip) | state MiB | batch MiB "
    "| temp MiB | total GiB / HBM | TFLOP/chip | all-reduce MiB | other "
    "collectives MiB | step ms at MFU |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(r: dict) -> str:
  """One markdown row of `analyse`'s result (see TABLE_HEADER)."""
  mib = lambda b: "-" if b is None else f"{b / 2**20:.1f}"
  state = sum(r[k] for k in ("params_bytes", "target_bytes",
                             "opt_state_bytes", "extra_bytes"))
  comms = r["collectives"]
  if comms is None:
    all_reduce = other = None
  else:
    all_reduce = comms.get("all-reduce", {}).get("bytes", 0)
    other = sum(c["bytes"] for op, c in comms.items() if op != "all-reduce")
  rules = " + rules" if r["sharding_rules"] else ""
  total = ("not compiled" if r["total_bytes"] is None
           else f"{r['total_bytes'] / 2**30:.2f}")
  hbm = f"{total} / {r['hbm_bytes'] / 2**30:.0f}" if r["hbm_bytes"] else total
  step = (f"{r['step_s_at_mfu'] * 1e3:.1f} ({r['mfu']:.0%})"
          if r["step_s_at_mfu"] else "-")
  return (f"| {r['config']}{rules} | {r['topology']}"
          f"{' x' + str(r['num_slices']) if r['num_slices'] > 1 else ''} | "
          f"{r['chips']} | {r['global_batch']} ({r['batch_per_chip']}) | "
          f"{mib(state)} | {mib(r['batch_bytes'])} | {mib(r['temp_bytes'])} | "
          f"{hbm} | {r['flops_per_chip'] / 1e12:.3f} | {mib(all_reduce)} | "
          f"{mib(other)} | {step} |")


def _gib(nbytes: int) -> str:
  return f"{nbytes / 2**30:.2f}"


def _first_line(error: Exception) -> str:
  lines = [s.strip() for s in str(error).splitlines() if s.strip()]
  return lines[0] if lines else repr(error)


def _memory_line(message: str) -> str:
  for line in message.splitlines():
    if "Used" in line or "out of memory" in line.lower():
      return line.strip()
  return _first_line(Exception(message))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with configs/ importable first (cli_flags)."""
  cli_flags.make_config_importable(argv)
  return flags.FLAGS(argv)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _TABLE.value:
    with open(_TABLE.value) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    print("\n".join([TABLE_HEADER] + [table_row(r) for r in rows]))
    return
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/fc.py")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    r = analyse(_CONFIG.value, _TOPOLOGY.value, _NUM_SLICES.value,
                mfu=_MFU.value, hlo_path=_HLO.value,
                lower_only=_LOWER_ONLY.value)
  except (AotError, ValueError) as e:
    if os.environ.get("CORRJAX_TRACEBACK"):
      raise
    sys.exit(f"corrjax.aot: error: {_first_line(e)}")
  print(format_report(r), flush=True)
  if _JSON.value:
    with open(_JSON.value, "a") as f:
      f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
