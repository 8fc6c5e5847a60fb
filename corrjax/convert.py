r"""Imports PyTorch ResNet checkpoints as corrjax encoder directories.

  python -m corrjax.convert --from=resnet50-0676ba61.pth --kind=torchvision \
      --out=encoders/imagenet50
  python -m corrjax.convert --from=moco_v1_200ep_pretrain.pth.tar \
      --kind=moco --out=encoders/mocov1
  python -m corrjax.convert --from=pretrained_fc.pth --kind=sfc_fc \
      --out=encoders/sfc_fc
  python -m corrjax.convert --from=pretrained.pth --kind=crw --out=encoders/crw
  python -m corrjax.convert --from=ckpt.pth --kind=plain \
      --prefix=state_dict.module.backbone --out=encoders/mine
  python -m corrjax.convert --from=APE_compact_intervideo_722.pt \
      --kind=liir --out=encoders/liir

A checkpoint's tensors are named by their nested dict keys joined with '.':
`{"state_dict": {"module.encoder_q.conv1.weight": w}}` holds
`state_dict.module.encoder_q.conv1.weight`. Each kind takes the tensors under
one prefix, which must then be exactly a torchvision ResNet-18/34/50 trunk
(classifier `fc.*` and `num_batches_tracked` dropped); anything outside the
prefix (EMA/target copies, heads, optimizer state, arguments) is ignored and
reported. Architecture and width are read from the tensors (blocks per stage,
bottleneck or not, conv1's output channels). A trunk without layer4 becomes a
3-stage encoder (enough for label propagation, which reads layer3). Missing,
unexpected or misshapen tensors are an error: nothing is written.

  kind         tensors under                  padding
  torchvision  (top level)                    zeros
  moco         state_dict.module.encoder_q.   zeros
  sfc_fc       model.online_encoder.          zeros
  crw          model.encoder.model.           reflect
  plain        --prefix (default: top level)  zeros

`--padding_mode` overrides a kind's padding.

Kind `liir` is not a plain trunk: LIIR_pytorch's `MAST` state dicts
(models/liir.py) become the whole LIIRNet, see `convert_liir` (arch
'liir_resnet18' in encoder.json).

Strides are not stored: label propagation sets layer3/layer4 to stride 1
(SFC `code/models/resnet.py:259-266`), which changes no weight.
"""

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

from corrjax import cli_flags
from corrjax import pretrained
from corrjax import torch_pickle
from corrjax.models import resnet


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a kind of checkpoint keeps its ResNet trunk.

  Attributes:
    prefix: dotted path of the trunk's tensors (None: from --prefix).
    padding_mode: conv padding the model was trained with.
    drop: trunk name prefixes that are not part of the trunk (classifier).
    rename: maps a trunk tensor name to torchvision's.
  """
  prefix: str | None
  padding_mode: str = "zeros"
  drop: tuple[str, ...] = ("fc.",)
  rename: Callable[[str], str] = lambda name: name


def _crw_name(name: str) -> str:
  # VW `code/test.py:38-44` loads `conv1.1.weight` / `conv2.1.weight` (convs
  # once stored as a pad + conv pair) as `conv1.weight` / `conv2.weight`;
  # both namings are accepted.
  return re.sub(r"(^|\.)(conv[12])\.1\.weight$", r"\1\2.weight", name)


KINDS = {
    # torchvision's ResNet state dicts (SFC `code/models/resnet.py:295-298`).
    "torchvision": Layout(prefix=""),
    # MoCo v1/v2 `.pth.tar`: the query encoder; fc is the classifier or the
    # v2 MLP (SFC `code/models/encoder.py:63-71`, VW
    # `code/utils/__init__.py:302-307`).
    "moco": Layout(prefix="state_dict.module.encoder_q."),
    # SFC's `pretrained_fc.pth` (SFC `code/models/encoder.py:89-94`): a
    # ResNet-18 built with head_type='early_return', so no fc
    # (`code/models/fine_grained.py:33`).
    "sfc_fc": Layout(prefix="model.online_encoder.", drop=()),
    # CRW's `pretrained.pth` (VW `code/test.py:36-45`): CRW.encoder =
    # From3D(resnet) (`code/model.py:21`, `code/utils/__init__.py:287-324`),
    # convs reflect-padded (`:289-291`); fc and avgpool removed by modify().
    "crw": Layout(prefix="model.encoder.model.", padding_mode="reflect",
                  drop=(), rename=_crw_name),
    "plain": Layout(prefix=None),
    # LIIR_pytorch's MAST (`models/mast_momen.py`): converted whole by
    # convert_liir; the trunk is `feature_extraction.` (prefix unused).
    "liir": Layout(prefix="feature_extraction."),
}

_FLAX_TO_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias",
                       "mean": "running_mean", "var": "running_var"}
_SHOW = 5  # Names listed per kind of problem in error messages.


def convert_state_dict(state_dict: Mapping[str, Any], kind: str,
                       prefix: str | None = None,
                       padding_mode: str | None = None
                       ) -> tuple[dict, dict]:
  """Converts a loaded checkpoint's ResNet trunk to corrjax variables.

  Args:
    state_dict: the checkpoint as loaded (`torch_pickle.load` or
      `torch.load`): nested mappings whose array leaves are named by their
      keys joined with '.'.
    kind: one of `KINDS`.
    prefix: trunk prefix for kind 'plain' (a trailing '.' is optional).
    padding_mode: overrides the kind's padding ('zeros' or 'reflect').

  Returns:
    (variables {"params", "batch_stats"} of float32 numpy arrays in
    `resnet.py`'s names, conv kernels HWIO; spec dict(arch, width,
    padding_mode) as `pretrained.load_encoder` returns it).

  Raises:
    ValueError: unknown kind, no trunk under the prefix, an unsupported
      architecture, or missing / unexpected / misshapen tensors.
  """
  variables, spec, _ = _convert(state_dict, kind, prefix, padding_mode)
  return variables, spec


def flatten_tensors(tree: Mapping[Any, Any]) -> dict[str, np.ndarray]:
  """Array leaves of nested mappings, keyed by their '.'-joined path."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      for sub, array in flatten_tensors(value).items():
        out[f"{key}.{sub}"] = array
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
      out[str(key)] = np.asarray(value)
  return out


def infer_architecture(trunk: Mapping[str, np.ndarray]
                       ) -> tuple[str, int, int]:
  """(arch, width, num_stages) of a torchvision-named ResNet trunk.

  Args:
    trunk: torchvision names ('conv1.weight', 'layer1.0.bn1.bias', ...) to
      arrays (conv weights OIHW).

  Raises:
    ValueError: no stem conv, or more blocks than any supported ResNet
      (e.g. ResNet-101).
  """
  stem = trunk.get("conv1.weight")
  if stem is None or stem.ndim != 4 or tuple(stem.shape[1:]) != (3, 7, 7):
    raise ValueError(
        "no ResNet stem: expected 'conv1.weight' of shape [width, 3, 7, 7], "
        f"got {None if stem is None else list(stem.shape)}.")
  width = int(stem.shape[0])
  blocks = [0] * 4
  for name in trunk:
    match = re.match(r"layer([1-4])\.(\d+)\.", name)
    if match:
      stage, block = int(match[1]) - 1, int(match[2])
      blocks[stage] = max(blocks[stage], block + 1)
  num_stages = 4 if blocks[3] else 3
  bottleneck = any(re.match(r"layer[1-4]\.\d+\.conv3\.", n) for n in trunk)
  # The smallest supported ResNet with these blocks; any it lacks are then
  # reported as missing tensors.
  fits = [(sum(sizes), arch)
          for arch, (sizes, block_cls) in resnet.STAGE_SIZES.items()
          if (block_cls is resnet.Bottleneck) == bottleneck
          and all(f <= s for f, s in zip(blocks, sizes))]
  if fits:
    return min(fits)[1], width, num_stages
  supported = ", ".join(
      f"{a} {s} {'bottleneck' if b is resnet.Bottleneck else 'basic'}"
      for a, (s, b) in resnet.STAGE_SIZES.items())
  raise ValueError(
      f"blocks per stage {tuple(blocks)} with "
      f"{'bottleneck' if bottleneck else 'basic'} blocks exceed every "
      f"supported ResNet ({supported}).")


def _convert(tree: Mapping[str, Any], kind: str, prefix: str | None,
             padding_mode: str | None) -> tuple[dict, dict, list[str]]:
  """convert_state_dict, plus lines that say what was dropped or ignored."""
  if kind not in KINDS:
    raise ValueError(f"unknown kind {kind!r}; choose from {sorted(KINDS)}.")
  if kind == "liir":
    if prefix is not None or padding_mode not in (None, "zeros"):
      raise ValueError("kind 'liir' takes no --prefix or --padding_mode.")
    return convert_liir(tree)
  layout = KINDS[kind]
  if prefix is not None and layout.prefix is not None:
    raise ValueError(f"--prefix is only for --kind=plain; kind {kind!r} "
                     f"reads {layout.prefix!r}.")
  prefix = layout.prefix if layout.prefix is not None else (prefix or "")
  if prefix and not prefix.endswith("."):
    prefix += "."
  padding_mode = padding_mode or layout.padding_mode
  if padding_mode not in ("zeros", "reflect"):
    raise ValueError(f"unknown padding_mode {padding_mode!r}; expected "
                     "'zeros' or 'reflect'.")
  tensors = flatten_tensors(tree)
  trunk, dropped, notes = _select_trunk(tensors, kind, prefix, layout)
  arch, width, num_stages = infer_architecture(trunk)
  expected = _expected_shapes(arch, width, num_stages)
  _check_names_and_shapes(trunk, expected, f"{arch} (width {width}, "
                          f"{num_stages} stages) [kind {kind!r}, prefix "
                          f"{prefix!r}]")
  flat = {}
  for name, (path, _) in expected.items():
    value = np.asarray(trunk[name]).astype(np.float32)
    if path[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    flat[path] = np.ascontiguousarray(value)
  variables = flax.traverse_util.unflatten_dict(flat)
  spec = dict(arch=arch, width=width, padding_mode=padding_mode)
  notes.insert(0, f"{arch}, width {width}, {num_stages} stages, padding "
               f"{padding_mode}: {len(flat)} tensors.")
  if num_stages == 3:
    notes.append("no layer4 in the checkpoint: a 3-stage encoder.")
  counters = [n for n in dropped if n.endswith("num_batches_tracked")]
  others = [n for n in dropped if n not in counters]
  if others:
    notes.append(f"dropped {len(others)}: {_listing(_sorted(others))}.")
  if counters:
    notes.append(f"dropped {len(counters)} BN num_batches_tracked counters.")
  return variables, spec, notes


LIIR_ARCH = "liir_resnet18"


def _strip_prefix(tensors: dict[str, np.ndarray]
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
  """(tensors under 'state_dict.' if any, less a 'module.' prefix; others).
  """
  ignored = []
  if any(k.startswith("state_dict.") for k in tensors):
    ignored = [k for k in tensors if not k.startswith("state_dict.")]
    tensors = {k[len("state_dict."):]: v for k, v in tensors.items()
               if k.startswith("state_dict.")}
  if tensors and all(k.startswith("module.") for k in tensors):
    tensors = {k[len("module."):]: v for k, v in tensors.items()}
  return tensors, ignored


def convert_liir(tree: Mapping[str, Any]) -> tuple[dict, dict, list[str]]:
  """LIIR_pytorch checkpoints (`torch.save({'state_dict': MAST...})`).

  Reference: shasha521/LIIR_pytorch@21c7ba5 `main_dis.py:302-319` (saved
  as {'epoch' or 'iter', 'state_dict': model.module.state_dict(), ...}),
  `models/mast_momen.py:18-22` and `models/colorizer_momen.py:79-82`.

    feature_extraction.*            params/encoder (torchvision names),
                                    batch_stats/encoder
    feature_extraction.pos_embed1   params/pos_embed [1, C, H, W] -> NHWC
    post_convolution.{weight,bias}  params/post_convolution
    conv_semantic.*   (optional)    params/conv_semantic
    conv_semantic_k.* (optional)    momentum/conv_semantic_k
    colorizer.feats_queue (opt.)    queue/feats [N, h, w, C] (NHWC)
    colorizer.refs_queue, .flag     queue/ids int32 [N], queue/flag int32

  The APE-only model (`models/mast_semantic.py` without --semantic) has no
  semantic head, momentum head or queue; `evaluate_davis.py:52` loads with
  strict=False, and so does this for the optional parts. Widths are read
  from the tensors (conv1: stem width w; LIIR's stages are w, 2w, 4w, 4w).

  Returns:
    (variables {"params", "batch_stats"[, "momentum"][, "queue"]} of
    float32 numpy (ids int32), spec dict(arch='liir_resnet18', width,
    padding_mode='zeros'), notes).
  """
  # Imported here: models.liir is only needed for this kind.
  from corrjax.models import liir  # pylint: disable=g-import-not-at-top
  tensors, ignored = _strip_prefix(flatten_tensors(tree))
  stem = tensors.get("feature_extraction.conv1.weight")
  pe = tensors.get("feature_extraction.pos_embed1")
  match = tensors.get("post_convolution.weight")
  if stem is None or pe is None or match is None:
    raise ValueError(
        "not a LIIR_pytorch MAST checkpoint: needs feature_extraction."
        "conv1.weight, feature_extraction.pos_embed1 and post_convolution."
        f"weight; the file holds {_listing(_sorted(tensors))}.")
  width = int(stem.shape[0])
  semantic = tensors.get("conv_semantic.weight")
  model = liir.LIIRNet(
      width=width, widths=(width, 2 * width, 4 * width, 4 * width),
      pe_size=tuple(int(d) for d in pe.shape[2:]),
      match_dim=int(match.shape[0]),
      semantic_dim=int(semantic.shape[0]) if semantic is not None else 128)
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  expected = {}
  for path, leaf in flax.traverse_util.flatten_dict(abstract).items():
    shape = tuple(leaf.shape)
    if path[1] == "encoder":
      name = "feature_extraction." + _torch_name(path[2:])
    elif path[1] == "pos_embed":
      name, shape = "feature_extraction.pos_embed1", (
          shape[0], shape[3], shape[1], shape[2])
    else:
      name = f"{path[1]}.{_FLAX_TO_TORCH_LEAF[path[-1]]}"
    if path[-1] == "kernel":
      shape = (shape[3], shape[2], shape[0], shape[1])  # HWIO -> OIHW.
    expected[name] = (path, shape)
  optional = {"conv_semantic.weight", "conv_semantic.bias"}
  if semantic is None:
    expected = {k: v for k, v in expected.items() if k not in optional}
  extra = {}
  if "conv_semantic_k.weight" in tensors:
    for leaf, torch_leaf in (("kernel", "weight"), ("bias", "bias")):
      shape = expected[f"conv_semantic.{torch_leaf}"][1]
      expected[f"conv_semantic_k.{torch_leaf}"] = (
          ("momentum", "conv_semantic_k", leaf), shape)
  queue_names = {"colorizer.feats_queue": "feats",
                 "colorizer.refs_queue": "ids", "colorizer.flag": "flag"}
  for name, leaf in queue_names.items():
    if name in tensors:
      extra[("queue", leaf)] = np.asarray(tensors[name])
  counters = [n for n in tensors if n.endswith("num_batches_tracked")]
  trunk = {k: v for k, v in tensors.items()
           if k not in queue_names and k not in counters}
  _check_names_and_shapes(trunk, expected, f"LIIR MAST (width {width})")
  flat = {}
  for name, (path, _) in expected.items():
    value = np.asarray(trunk[name]).astype(np.float32)
    if path[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    elif path[-1] == "pos_embed":
      value = value.transpose(0, 2, 3, 1)  # NCHW -> NHWC.
    flat[path] = np.ascontiguousarray(value)
  notes = [f"{LIIR_ARCH}, width {width}: {len(flat)} tensors."]
  if ("queue", "feats") in extra:
    feats = extra[("queue", "feats")].astype(np.float32)
    flat[("queue", "feats")] = np.ascontiguousarray(
        feats.transpose(0, 2, 3, 1))
    notes.append(f"queue of {feats.shape[0]} keys {list(feats.shape[1:])}.")
  if ("queue", "ids") in extra:
    flat[("queue", "ids")] = extra[("queue", "ids")].astype(np.int32)
  if ("queue", "flag") in extra:
    flat[("queue", "flag")] = np.int32(
        np.asarray(extra[("queue", "flag")]).reshape(-1)[0])
  for part, what in (("conv_semantic.weight", "semantic head"),
                     ("conv_semantic_k.weight", "momentum head")):
    if part not in tensors:
      notes.append(f"no {what} in the checkpoint.")
  if counters:
    notes.append(f"dropped {len(counters)} BN num_batches_tracked counters.")
  if ignored:
    notes.append(f"ignored {len(ignored)} tensors outside 'state_dict': "
                 f"{_listing(ignored)}.")
  variables = flax.traverse_util.unflatten_dict(flat)
  return variables, dict(arch=LIIR_ARCH, width=width,
                         padding_mode="zeros"), notes


def _select_trunk(tensors: dict[str, np.ndarray], kind: str, prefix: str,
                  layout: Layout
                  ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
  """(trunk in torchvision names, dropped names, notes) under `prefix`."""
  trunk, dropped, outside = {}, [], []
  for key, value in tensors.items():
    if not key.startswith(prefix):
      outside.append(key)
      continue
    name = layout.rename(key[len(prefix):])
    if name.endswith("num_batches_tracked") or name.startswith(layout.drop):
      dropped.append(name)
    elif name in trunk:
      raise ValueError(f"two tensors map to {name!r} (one is {key!r}).")
    else:
      trunk[name] = value
  if "conv1.weight" not in trunk:
    stems = [k[:-len("conv1.weight")] for k in tensors
             if re.fullmatch(r"(.*\.)?conv1\.weight", k) and "layer" not in k]
    if stems and stems[0]:
      hint = (f"a ResNet trunk is under {_listing([repr(s) for s in stems])}"
              "; use the kind for that layout or --kind=plain --prefix="
              f"{stems[0].rstrip('.')}")
    elif stems:
      hint = "it is a torchvision state dict: use --kind=torchvision"
    else:
      hint = (f"the file holds {len(tensors)} tensors, e.g. "
              f"{_listing(_sorted(tensors))}")
    raise ValueError(f"no ResNet stem ('conv1.weight') under prefix "
                     f"{prefix!r} (kind {kind!r}); {hint}.")
  notes = []
  if outside:
    notes.append(f"ignored {len(outside)} tensors outside {prefix!r}: "
                 f"{_listing(outside)}.")
  return trunk, dropped, notes


def _expected_shapes(arch: str, width: int, num_stages: int
                     ) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """torchvision name -> (flax path incl. collection, torch shape)."""
  model = resnet.make_resnet(arch, width=width, num_stages=num_stages)
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  expected = {}
  for path, leaf in flax.traverse_util.flatten_dict(abstract).items():
    shape = tuple(leaf.shape)
    if path[-1] == "kernel":
      shape = (shape[3], shape[2], shape[0], shape[1])  # HWIO -> OIHW.
    expected[_torch_name(path[1:])] = (path, shape)
  return expected


def _torch_name(path: tuple[str, ...]) -> str:
  """('layer1', 'block0', 'downsample_bn', 'scale') -> torchvision name."""
  parts = []
  for part in path[:-1]:
    if part.startswith("block"):
      parts.append(part[len("block"):])
    elif part.startswith("downsample_"):
      parts.append("downsample." + ("0" if part.endswith("conv") else "1"))
    else:
      parts.append(part)
  return ".".join(parts + [_FLAX_TO_TORCH_LEAF[path[-1]]])


def _check_names_and_shapes(trunk: Mapping[str, np.ndarray],
                            expected: Mapping[str, Any], what: str) -> None:
  """Raises one ValueError listing every kind of mismatch."""
  missing = [n for n in expected if n not in trunk]
  unexpected = [n for n in trunk if n not in expected]
  misshapen = [f"{n} {list(trunk[n].shape)} != {list(expected[n][1])}"
               for n in expected
               if n in trunk and tuple(trunk[n].shape) != expected[n][1]]
  problems = [f"{len(names)} {label} ({_listing(_sorted(names))})"
              for label, names in (("missing", missing),
                                   ("unexpected", unexpected),
                                   ("with the wrong shape", misshapen))
              if names]
  if problems:
    raise ValueError(f"checkpoint does not match {what}: "
                     f"{'; '.join(problems)}. Nothing was converted.")


def _sorted(names: Any) -> list[str]:
  """Names in natural order ('layer1.2' before 'layer1.10')."""
  return sorted(names, key=lambda n: [int(t) if t.isdigit() else t
                                      for t in re.split(r"(\d+)", n)])


def _listing(names: list[str]) -> str:
  """The first few names, and how many more there are."""
  shown = ", ".join(names[:_SHOW])
  return shown + (f", ... ({len(names) - _SHOW} more)"
                  if len(names) > _SHOW else "")


def run(source: str, kind: str, out: str, prefix: str | None = None,
        padding_mode: str | None = None) -> list[str]:
  """Converts the file `source` and writes the encoder directory `out`.

  Returns:
    Lines describing the conversion (architecture, what was dropped or
    ignored).
  """
  if kind not in KINDS:  # Before reading a large file.
    raise ValueError(f"unknown kind {kind!r}; choose from {sorted(KINDS)}.")
  if os.path.isdir(out) and os.listdir(out):
    raise FileExistsError(f"{out!r} exists and is not empty; choose a new "
                          "--out folder.")
  checkpoint = torch_pickle.load(source)
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f"{source!r} holds a {type(checkpoint).__name__}, not "
                     "a dict of tensors.")
  variables, spec, notes = _convert(checkpoint, kind, prefix, padding_mode)
  pretrained.save_encoder(out, variables, **spec, kind=kind,
                          source=os.path.abspath(source))
  return notes + [f"wrote {os.path.abspath(out)}"]


_FROM = flags.DEFINE_string("from", None, "PyTorch checkpoint (.pth, "
                            ".pth.tar, .pt; zip or legacy format).")
_KIND = flags.DEFINE_string("kind", None, f"One of {', '.join(KINDS)}.")
_OUT = flags.DEFINE_string("out", None, "Encoder directory to create.")
_PREFIX = flags.DEFINE_string(
    "prefix", None, "Trunk prefix for --kind=plain, e.g. "
    "'state_dict.module.backbone' (default: none).")
_PADDING_MODE = flags.DEFINE_string(
    "padding_mode", None, "Override the kind's conv padding: zeros or "
    "reflect (default: reflect for crw, zeros otherwise).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    sys.exit(f"corrjax: error: unexpected arguments {' '.join(argv[1:])}.")
  for flag in (_FROM, _KIND, _OUT):
    if not flag.value:
      sys.exit(f"corrjax: error: --{flag.name} is required.")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every write at INFO.
    logging.set_verbosity(logging.WARNING)
  try:
    notes = run(_FROM.value, _KIND.value, _OUT.value, _PREFIX.value,
                _PADDING_MODE.value)
  except (OSError, ValueError) as e:
    sys.exit(f"corrjax: error: {e}")
  print(f"Converted {_FROM.value} ({_KIND.value}):")
  for line in notes:
    print("  " + line)



if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_or_exit)
