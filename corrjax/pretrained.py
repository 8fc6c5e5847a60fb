"""ResNet trunks saved on their own: converted weights and trained workdirs.

An *encoder directory* holds one ResNet trunk for feature extraction:

  <dir>/encoder.json   {"arch", "width", "padding_mode", "kind", "source"}
  <dir>/variables/     orbax checkpoint of {"params", "batch_stats"} with
                       corrjax's torchvision-style names (resnet.py).

`python -m corrjax.convert` writes them from PyTorch checkpoints. A training
workdir (`<workdir>/config.json` + `<workdir>/checkpoints/`) is accepted
wherever an encoder directory is (networks.from_path): its latest
checkpoint's encoder is used.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

_META = "encoder.json"
_VARIABLES = "variables"
_SPEC_KEYS = ("arch", "width", "padding_mode")


def save_encoder(out_dir: str, variables: dict, *, arch: str, width: int,
                 padding_mode: str, kind: str, source: str) -> None:
  """Writes an encoder directory (refuses to overwrite a non-empty one).

  Args:
    out_dir: the directory to create.
    variables: {"params": ..., "batch_stats": ...} numpy or jax arrays.
    arch, width, padding_mode: `resnet.make_resnet` arguments.
    kind: where the weights came from ('torchvision', 'moco', ...).
    source: the original file, for the record.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise FileExistsError(f"{out_dir!r} exists and is not empty; choose a "
                          "new --out folder.")
  os.makedirs(out_dir, exist_ok=True)
  variables = jax.tree_util.tree_map(np.asarray, variables)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(out_dir, _VARIABLES), variables)
  meta = dict(arch=arch, width=int(width), padding_mode=padding_mode,
              kind=kind, source=source)
  with open(os.path.join(out_dir, _META), "w") as f:
    json.dump(meta, f, indent=2)


def check_encoder_path(path: str) -> None:
  """Raises FileNotFoundError unless `path` is loadable by load_encoder."""
  path = os.path.abspath(path)
  if os.path.isfile(os.path.join(path, _META)):
    return
  if (os.path.isfile(os.path.join(path, "config.json")) and
      os.path.isdir(os.path.join(path, "checkpoints"))):
    return
  raise FileNotFoundError(
      f"{path!r} is neither an encoder directory ({_META}, from "
      "`python -m corrjax.convert`) nor a training workdir (config.json and "
      "checkpoints/).")


def is_encoder_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(os.path.abspath(path), _META))


def load_encoder(path: str) -> tuple[dict, dict]:
  """Variables and architecture of an encoder directory.

  Returns:
    (variables {"params", "batch_stats"} as numpy, spec dict(arch, width,
    padding_mode) for `features.trunk_encoder`).

  Raises:
    FileNotFoundError: `path` is not an encoder directory.
  """
  if not is_encoder_dir(path):
    raise FileNotFoundError(f"{path!r} has no {_META}: not an encoder "
                            "directory from `python -m corrjax.convert`.")
  path = os.path.abspath(path)
  with open(os.path.join(path, _META)) as f:
    meta = json.load(f)
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(path, _VARIABLES))
  return (jax.tree_util.tree_map(np.asarray, variables),
          {k: meta[k] for k in _SPEC_KEYS})


def workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in `<workdir>/config.json`."""
  with open(os.path.join(workdir, "config.json")) as f:
    return ml_collections.ConfigDict(json.load(f))
