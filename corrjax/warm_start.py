"""Warm starts: copy named subtrees of another run into a fresh state.

`config.model_init` (config_defaults.model_init) names a source, a training
workdir (its latest checkpoint) or an encoder directory from
`corrjax.convert`, and the subtrees to copy as 'state/path[=source/path]'
('/'-joined keys of the state as a plain tree, e.g. 'params/encoder'). It
applies to step 0 only: a resumed run keeps its own weights. LIIR's second
stage and Mask-VOS's stages start this way, usually with
`config.optim.frozen` keeping a copied part fixed.
"""

import flax.serialization
import jax
import ml_collections
import numpy as np

from corrjax import checkpointing
from corrjax import pretrained


def source_tree(path: str) -> dict:
  """A workdir's latest state, or an encoder directory's
  {"params", "batch_stats"}, as a plain tree."""
  pretrained.check_encoder_path(path)
  if pretrained.is_encoder_dir(path):
    return pretrained.load_encoder(path)[0]
  return checkpointing.restore_tree(path)[1]


def _get(tree, path: str, where: str):
  node = tree
  for key in filter(None, path.split("/")):
    if not isinstance(node, dict) or key not in node:
      keys = sorted(node) if isinstance(node, dict) else []
      raise ValueError(f"model_init: {where} has no {path!r} (at {key!r}; "
                       f"has {keys}).")
    node = node[key]
  return node


def _set(tree: dict, path: str, value) -> dict:
  keys = [k for k in path.split("/") if k]
  if not keys:
    return value
  out = dict(tree)
  out[keys[0]] = _set(tree[keys[0]], "/".join(keys[1:]), value)
  return out


def apply(state, model_init: ml_collections.ConfigDict, log=print):
  """`state` with the subtrees of `model_init.path` copied in.

  Leaves keep their dtype and sharding; every copied leaf must have the
  shape of the one it replaces.

  Raises:
    ValueError: a missing path, or a structure or shape mismatch.
  """
  if not model_init.get("path"):
    return state
  source = source_tree(model_init.path)
  tree = flax.serialization.to_state_dict(state)
  for entry in model_init.subtrees:
    dst, _, src = entry.partition("=")
    src = src or dst
    old = _get(tree, dst, "the state")
    new = _get(source, src, model_init.path)
    old_def = jax.tree_util.tree_structure(old)
    new_def = jax.tree_util.tree_structure(new)
    if old_def != new_def:
      raise ValueError(f"model_init: {src!r} of {model_init.path} and "
                       f"{dst!r} of the state differ in structure.")
    bad = [f"{jax.tree_util.keystr(p)} {np.shape(n)} vs {np.shape(o)}"
           for (p, o), n in zip(jax.tree_util.tree_leaves_with_path(old),
                                jax.tree_util.tree_leaves(new))
           if np.shape(o) != np.shape(n)]
    if bad:
      raise ValueError(f"model_init: shapes differ for {dst!r}: "
                       + "; ".join(bad[:5]))
    placed = jax.tree_util.tree_map(
        lambda o, n: jax.device_put(np.asarray(n, o.dtype), o.sharding),
        old, new)
    tree = _set(tree, dst, placed)
    log(f"model_init: {dst} <- {model_init.path}:{src}")
  return flax.serialization.from_state_dict(state, tree)
