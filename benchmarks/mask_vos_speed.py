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

Side by side with the released code (`--reference_dir`, a checkout of
0liliulei/Mask-VOS@6276e91; none of its code is copied here; results in
docs/mask_vos_reference.md): its mask-training step as `train_mask.py`
runs it, CPU float32, torch threads `--torch_threads` (default
os.cpu_count()):
  network: `models/__init__.py:37-54` `get_model` for TASK 'YTVOS_Mask'
    (configs/ytvos_mask.yaml through `core/config.py` `cfg_from_file`):
    `FrameworkMask` (`models/framework_mask.py:238-252`) of `Net`
    (`models/net.py:38-80`; E = `models/resnet50.py:27-112`, run under
    no_grad at `net.py:64-66`; key/value/skip heads trained) and `Net2`
    (V = `models/resnet50_mod.py:10-78`, 4-channel input, + the
    FeatureFusionBlock with CBAM of `models/net2.py:14-56`),
    `MemoryReader.readout` and `Decoder` (`models/modules.py:382-448,
    466-499`);
  optimiser: `net.parameter_groups(LR, WEIGHT_DECAY)`
    (`framework_mask.py:251-252`, `models/base.py:206-239`) into
    `BaseTrainer.get_optim` (`base_trainer.py:50-76`: Adam, betas
    (0.5, 0.999), weight decay 5e-4), as `train_mask.py:604-610`;
  modes: `net.train(); net.fast_net.backbone.eval()`
    (`train_mask.py:784-785`);
  step: `Trainer.step(..., train=True)` itself (`train_mask.py:733-768`:
    the `FrameworkMask.forward` of `framework_mask.py:285-376` on
    `--ref_video_len` frames (the loader's VIDEO_LEN 5; frames 0-2 used),
    2 objects as two binary mask channels
    (`datasets/dataloader_video_quan.py:271-273`), 0.5 CE1 + 0.5 CE2,
    zero_grad, backward, Adam step), called with a stand-in `self`
    holding net and optimiser.
Runtime shims (no edits to its files): `Tensor.cuda` is the identity
(`train_mask.py:740-747`, `framework_mask.py:225`); setproctitle,
tensorboard and skimage (`train_mask.py:505,527`,
`utils/davis2017_metrics.py:14`) are stubbed when absent;
`matplotlib.cm.get_cmap` (gone in matplotlib >= 3.9, used as a default
argument at `base_trainer.py:294`) maps to `matplotlib.colormaps`; when
`import torchvision` fails (a CUDA build of its C ops beside CPU torch),
its pure-Python `torchvision.models.resnet` is loaded without running the
package __init__ (`models/resnet50.py:11-13`, `resnet50_mod.py:6-7`,
`modules.py:6-7` need ResNet/Bottleneck/BasicBlock only).

Ours at the same size and architecture (configs/mask_vos.py:arch=resnet50,
batch `--ref_batch_size`, `--ref_size` crops, N = 2 references + query,
O = 2, temperature 0.05, Adam lr 1e-5, no weight decay), two steps:
  ours_full: the train step as corrjax.train builds it, full Eq. 16 loss
    (L_seg + 0.1 L_short + 0.5 L_long, E trained, 5 more E passes for
    L_short/L_long);
  ours_seg: L_seg only, E's trunk frozen (stop_gradient on its params, so
    no backward through it; its updates zero via config.optim.frozen), the
    key conv, V and D trained: the reference's structure.
What each computes per clip: reference: E (no grad) on `--ref_video_len`
frames, 8 V passes (2 objects x {frame 0 GT, frame 1 propagated, frame 1
GT, frame 2 propagated}), 4 D passes, dense affinities 1->1 and 2->1; ours:
E on 3 frames, 6 V passes (2 objects x {2 references, query}), 2 D passes,
one dense 2->1 affinity, no FeatureFusionBlock/CBAM in V.
`--v_trunk` adds V's trunk alone on both sides, the same work (reference:
`models/resnet50_mod.py:10-54`; ours: MaskEncoder), forward + backward on
8 B images: how torch and XLA compare on this CPU without the structural
differences above.
Timing: compile and `--warmup` steps of each, then `--pairs` interleaved
rounds (ours_full, ours_seg, reference[, ours_v, reference_v]), each the
median of `--ref_steps` steps; per-round times, loads, and reference /
ours ratios.

  python benchmarks/mask_vos_speed.py --reference_dir=/tmp/mvos_ref \
      [--reference_path=/tmp/tv]   # a folder holding torchvision
"""

import argparse
import json
import os
import importlib.util
import statistics
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from corrjax import config_defaults  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import optim  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.losses import mask_vos as mask_vos_losses  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.data import normalization  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.methods import mask_vos  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.models import mask_vos_inference  # pylint: disable=g-import-not-at-top,wrong-import-position
import interleaved_rounds  # benchmarks/, beside this script.  # pylint: disable=g-import-not-at-top,wrong-import-position
import module_stubs  # benchmarks/module_stubs.py, beside this script.  # pylint: disable=g-import-not-at-top,wrong-import-position


def _batch(config, rng):
  d = config.data
  b, s, n, o = d.batch_size, d.crop_size, d.num_refs + 1, d.num_objects
  frames = lambda t: rng.integers(0, 256, (b, t, s, s, 3), np.uint8)  # pylint: disable=g-long-lambda
  return {"seg_frames": frames(n),
          "seg_masks": rng.integers(0, o + 1, (b, n, s, s)).astype(np.int32),
          "object_valid": np.ones((b, o), bool),
          "short_frames": frames(2), "long_frames": frames(2)}


def build_step(config):
  """(compile seconds, one-step fn) of corrjax.train's jitted step."""
  mesh = sharding.make_mesh((-1,), ("data",), jax.devices()[:1])
  model = mask_vos.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state, state_sh = train.create_state(config, mesh, model, tx)
  step = train.make_train_step(config, mesh, model, tx, schedule, state_sh)
  batch = sharding.shard_host_batch(_batch(config, np.random.default_rng(0)),
                                    sharding.batch_sharding(mesh))
  return _compiled_runner(step, state, batch)


def _compiled_runner(jitted_step, state, batch):
  """(compile seconds, fn running one step in place on `state`)."""
  t0 = time.time()
  compiled = jitted_step.lower(state, batch).compile()
  compile_s = time.time() - t0
  holder = {"state": state}

  def run():
    holder["state"], out = compiled(holder["state"], batch)
    jax.block_until_ready(out)

  return compile_s, run


def time_step(config, seg_weight, steps):
  config.loss.seg_weight = seg_weight
  compile_s, run = build_step(config)
  run()
  times = []
  for _ in range(steps):
    t0 = time.time()
    run()
    times.append(time.time() - t0)
  return {"phase": "full" if seg_weight else "corr", "compile_s": compile_s,
          "step_ms_median": 1e3 * statistics.median(times),
          "step_ms_min": 1e3 * min(times), "step_ms_max": 1e3 * max(times)}


def build_seg_step(config):
  """(compile seconds, one-step fn): L_seg only (methods/mask_vos.losses_fn's
  seg branch), E's trunk under stop_gradient and frozen, Adam on the rest."""
  import optax  # pylint: disable=import-outside-toplevel
  config.optim.frozen = ("^encoder/trunk/",)
  model = mask_vos.build_model(config)
  tx, _ = optim.make_optimizer(config.optim, config.total_steps)
  state = jax.jit(lambda r: mask_vos.init_state(
      r, model=model, tx=tx, config=config))(jax.random.key(config.seed))
  batch = jax.device_put(_batch(config, np.random.default_rng(0)))
  norm_name = config.data.normalization

  def loss_fn(params, batch_stats, batch):
    enc = dict(params["encoder"])
    enc["trunk"] = jax.lax.stop_gradient(enc["trunk"])
    params = {**params, "encoder": enc}
    frames = normalization.normalize(batch["seg_frames"], name=norm_name)
    n = frames.shape[1] - 1
    o = batch["object_valid"].shape[1]
    onehot = jax.nn.one_hot(batch["seg_masks"][:, :n], o + 1)[..., 1:]
    out, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, frames[:, :n],
        jnp.moveaxis(onehot, -1, 2), frames[:, n], train=True,
        mutable=["batch_stats"])
    seg, _ = mask_vos_losses.segmentation_loss(
        object_logits=out["object_logits"],
        labels=batch["seg_masks"][:, n], object_valid=batch["object_valid"])
    return seg, updates["batch_stats"]

  def step(state, batch):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1,
                         params=optax.apply_updates(state.params, updates),
                         batch_stats=stats, opt_state=opt_state), loss

  return _compiled_runner(jax.jit(step), state, batch)


def _torchvision_resnet_only():
  """Makes `torchvision.models.resnet` importable when `import torchvision`
  fails (its C ops built for CUDA torch): the package and its `models`
  subpackage are registered without running their __init__."""
  try:
    importlib.import_module("torchvision")
    return "torchvision imported"
  except Exception as e:  # pylint: disable=broad-except
    error = f"{type(e).__name__}: {e}"
  for name in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
    del sys.modules[name]
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    raise ImportError("torchvision not found; see --reference_path")
  root = os.path.dirname(spec.origin)
  for name, path in (("torchvision", root),
                     ("torchvision.models", os.path.join(root, "models"))):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
  return f"torchvision package __init__ skipped ({error[:80]})"


def load_reference(a):
  """Imports Mask-VOS's `train_mask` and `core.config` with the shims of
  the docstring; returns (train_mask, cfg, notes)."""
  for path in reversed([a.reference_dir] + [p for p in
                                            a.reference_path.split(":") if p]):
    sys.path.insert(0, path)
  notes = [_torchvision_resnet_only()]
  for name in ("setproctitle", "torch.utils.tensorboard", "skimage",
               "skimage.morphology"):
    try:
      __import__(name)
    except Exception:  # pylint: disable=broad-except
      sys.modules[name] = module_stubs.stub(name)
      notes.append(f"{name} stubbed")
  import matplotlib.cm  # pylint: disable=import-outside-toplevel
  if not hasattr(matplotlib.cm, "get_cmap"):
    matplotlib.cm.get_cmap = lambda name=None, lut=None: (
        matplotlib.colormaps[name])
    notes.append("matplotlib.cm.get_cmap -> matplotlib.colormaps")
  import train_mask  # pylint: disable=import-outside-toplevel
  from core import config as ref_config  # pylint: disable=import-outside-toplevel
  ref_config.cfg_from_file(os.path.join(a.reference_dir,
                                        "configs/ytvos_mask.yaml"))
  return train_mask, ref_config.cfg, notes


def build_reference_step(a):
  """One-step fn: Mask-VOS's own `Trainer.step` (train_mask.py:733-768)."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(a.torch_threads or os.cpu_count())
  train_mask, cfg, notes = load_reference(a)
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  assert cfg.TRAIN.TASK == "YTVOS_Mask", cfg.TRAIN.TASK
  torch.manual_seed(0)
  net = train_mask.get_model(cfg, remove_layers=cfg.MODEL.REMOVE_LAYERS)
  groups = net.parameter_groups(cfg.MODEL.LR, cfg.MODEL.WEIGHT_DECAY)
  optimiser = train_mask.Trainer.get_optim(groups, cfg.MODEL)
  net.train()
  net.fast_net.backbone.eval()
  b, t, s = a.ref_batch_size, a.ref_video_len, a.ref_size
  rng = np.random.default_rng(0)
  frames = torch.from_numpy(
      rng.standard_normal((b, t, 3, s, s)).astype(np.float32))
  ids = rng.integers(0, 3, (b, t, s, s))
  masks = torch.from_numpy(np.stack([ids == 1, ids == 2], 2).astype(
      np.float32))  # [B, T, 2, H, W]: dataloader_video_quan.py:271-273, the
  # YTVOS_Mask train loader (datasets/__init__.py:70-74).
  affine = torch.zeros(b, t, 2, 3)  # Unused by FrameworkMask.forward.
  batch = (frames, masks, frames.clone(), affine, affine)
  trainer = types.SimpleNamespace(net=net, optim=optimiser)
  notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} "
               "threads")

  def run():
    train_mask.Trainer.step(trainer, 0, batch, train=True)

  return run, notes, net


def build_v_trunks(a, ref_net):
  """One-step fns (ours, reference) of V's trunk alone, forward + backward
  of the sum of its output on 8 B images (the reference step's V passes):
  the reference's `resnet50_mod` ResNet (`models/resnet50_mod.py:10-54`:
  4-channel conv1, layer1-3 at stride 8, 1x1 conv to 512; train mode) and
  our MaskEncoder (ResNet-50 trunk, 1x1 value conv to 512). Same work on
  both sides: torch against XLA on this CPU, without the differences in
  structure of the whole steps."""
  import torch  # pylint: disable=import-outside-toplevel
  n, s = 8 * a.ref_batch_size, a.ref_size
  x = np.random.default_rng(1).standard_normal((n, s, s, 4)).astype(
      np.float32)
  trunk = ref_net.mask_encoder.backbone
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

  def ref_run():
    trunk.zero_grad()
    trunk(xt[:, :3], xt[:, 3:]).sum().backward()

  from corrjax.models import mask_vos as mask_vos_models  # pylint: disable=import-outside-toplevel
  model = mask_vos_models.MaskEncoder(arch="resnet50", width=64,
                                      value_dim=512)
  variables = model.init(jax.random.key(0), x[..., :3], x[..., 3])
  frames, masks = jnp.asarray(x[..., :3]), jnp.asarray(x[..., 3])

  def loss(params, stats):
    out, _ = model.apply({"params": params, "batch_stats": stats}, frames,
                         masks, train=True, mutable=["batch_stats"])
    return out.sum()

  grad = jax.jit(jax.grad(loss)).lower(
      variables["params"], variables["batch_stats"]).compile()

  def ours_run():
    jax.block_until_ready(grad(variables["params"],
                               variables["batch_stats"]))

  return ours_run, ref_run


def compare_reference(a):
  """Interleaved rounds of ours_full, ours_seg and the reference."""
  spec = os.path.join(REPO, "configs/mask_vos.py:arch=resnet50")
  print(f"Mask-VOS step vs reference: batch {a.ref_batch_size}, "
        f"{a.ref_size} px, reference video_len {a.ref_video_len}, ours N=2 "
        f"+ query, 2 objects, ResNet-50; device "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores; load "
        f"{os.getloadavg()}", flush=True)
  runs = {}
  for name in a.ours.split(","):
    config = config_defaults.load(spec)
    config.data.update(batch_size=a.ref_batch_size, crop_size=a.ref_size,
                       num_refs=2, num_objects=2)
    config.loss.temperature = 0.05
    config.optim.learning_rate = 1e-5
    builder = {"ours_full": build_step, "ours_seg": build_seg_step}[name]
    compile_s, runs[name] = builder(config)
    print(f"{name}: compile {compile_s:.1f} s", flush=True)
  runs["reference"], notes, ref_net = build_reference_step(a)
  print("reference: " + "; ".join(notes), flush=True)
  if a.v_trunk:
    runs["ours_v"], runs["reference_v"] = build_v_trunks(a, ref_net)
  for name, run in runs.items():
    t0 = time.perf_counter()
    for _ in range(a.warmup):
      run()
    print(f"{name}: {a.warmup} warm-up steps {time.perf_counter() - t0:.1f} "
          "s", flush=True)

  def log(name, i, seconds, load):
    print(f"round {i} {name}: {seconds:.2f} s/step (median of "
          f"{a.ref_steps}), load {load:.2f}", flush=True)

  times, loads = interleaved_rounds.interleave(
      runs, warmup=0, rounds=a.pairs, steps=a.ref_steps, log=log)
  for name in runs:
    line = interleaved_rounds.summary_line(name, times[name], loads[name])
    if name.startswith("ours"):
      partner = "reference_v" if name == "ours_v" else "reference"
      line += interleaved_rounds.ratio_text(partner, name, times)
    print(line, flush=True)


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
  p.add_argument("--reference_dir", default="",
                 help="a Mask-VOS checkout: time its mask-training step "
                 "against ours instead (see the docstring)")
  p.add_argument("--reference_path", default="",
                 help="':'-separated folders for sys.path (torchvision)")
  p.add_argument("--ours", default="ours_full,ours_seg",
                 help="our steps to time beside the reference")
  p.add_argument("--ref_batch_size", type=int, default=2)
  p.add_argument("--ref_size", type=int, default=64)
  p.add_argument("--ref_video_len", type=int, default=5,
                 help="frames the reference's step gets (VIDEO_LEN)")
  p.add_argument("--ref_steps", type=int, default=2,
                 help="timed steps per round")
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--pairs", type=int, default=3)
  p.add_argument("--torch_threads", type=int, default=0,
                 help="torch.set_num_threads (0: os.cpu_count())")
  p.add_argument("--v_trunk", action="store_true",
                 help="also time V's trunk alone on both sides (same work)")
  args = p.parse_args()
  if args.reference_dir:
    compare_reference(args)
    return
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
