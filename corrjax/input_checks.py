"""Checks of the config's paths, run before JAX is imported or anything is
written: a wrong path is one line within a second, and leaves no workdir.

Only existence is checked here; the readers check contents (frames, masks)
and name the offending file when one is unreadable.
"""

import os

import ml_collections

# data.source values that read config.data.root from disk.
_DISK_DATA = ("folder", "video")
# eval sources (per benchmark) that read a root from disk.
_DISK_EVALS = ("davis", "jhmdb", "vip")


def _check_folder(path: str, key: str, what: str) -> None:
  if not path:
    raise ValueError(f"{key} is empty: point it at {what} "
                     f"(--{key}=/path).")
  if path.startswith("gs://"):
    return
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{key}={path!r} does not exist.")


def evaluation_roots(config: ml_collections.ConfigDict):
  """(config key, path, what) of every evaluation that reads the disk."""
  data = config.get("data")
  data_root = data.get("root", "") if data is not None else ""
  for name, e in (config.get("evals") or {}).items():
    if e.source in _DISK_EVALS:
      yield (f"config.evals.{name}.root", e.root or data_root,
             f"the {e.source} root")


def check_paths(config: ml_collections.ConfigDict, *, train: bool) -> None:
  """Raises ValueError / FileNotFoundError (one line) for a bad path."""
  data = config.get("data")
  if train and config.get("total_steps", 0) and data is not None:
    if data.get("source") in _DISK_DATA:
      _check_folder(data.root, "config.data.root",
                    "a folder of frames or videos")
  for key, path, what in evaluation_roots(config):
    _check_folder(path, key, what)
