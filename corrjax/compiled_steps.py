"""In-process memo of what `train.train` builds before its first step.

Training the same step again in one process otherwise traces, lowers and
compiles it again, and traces the initialiser twice (shapes, then values):
on CPU 3-17 s per step even when XLA's persistent compilation cache holds
the executable, because tracing and lowering are paid before the cache is
asked. That happens to a run resumed in the same process after an
interruption, to a Mask-VOS schedule restarted inside one round, to a
notebook's second run, and many times in the test suite.

An entry is keyed by everything the step and the initial state are built
from: the config without the fields that only steer the loop around the
step (`LOOP_ONLY`: logging, checkpointing, evaluation, the warm start, where
data is read from), the mesh (device ids, axis names), and the method's
step-building functions (so a patched method is never served an old step).
Compiled steps are further keyed by the abstract state and batch (tree
structure, shapes, dtypes, shardings). A config the memo cannot serialise
is simply not memoised.
"""

import collections
import json

import jax

from corrjax import optim

# Config entries that do not change the compiled step or the initial state:
# how often the loop logs and saves, how many checkpoints it keeps, what is
# evaluated afterwards, which checkpoint a warm start copies from (applied
# after the memoised initialiser), and where and how fast batches are read.
LOOP_ONLY = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
             "evals", "model_init", "data.root", "data.pattern",
             "data.index_cache", "data.masks_dir", "data.num_threads",
             "data.prefetch")
MAX_ENTRIES = 8  # Configs kept; each holds one or two small executables.

# The method's functions the step and the state are built with (their
# identity is part of the key: a patched function is a new entry).
_BUILDERS = ("build_model", "init_state", "bind_train_step", "train_step")

_ENTRIES: collections.OrderedDict = collections.OrderedDict()


def step_reads_total_steps(config, method) -> bool:
  """Whether the step depends on `config.total_steps`: a cosine learning
  rate decays over it, and FC's and BYOL's EMA schedules bind it. Other
  methods say they do not (`STEP_READS_TOTAL_STEPS = False`), so that the
  rounds of one run that differ only in their last step (Mask-VOS's
  clustering rounds) share one compiled step."""
  return (optim.schedule_reads_total_steps(config.optim) or
          getattr(method, "STEP_READS_TOTAL_STEPS", True))


def _config_key(config, method) -> str | None:
  tree = config.to_dict()
  if not step_reads_total_steps(config, method):
    tree.pop("total_steps", None)
  for name in LOOP_ONLY:
    *parents, leaf = name.split(".")
    node = tree
    for p in parents:
      node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.pop(leaf, None)
  try:
    return json.dumps(tree, sort_keys=True, default=repr)
  except (TypeError, ValueError):
    return None


def entry(config, mesh: jax.sharding.Mesh, method) -> dict:
  """The memo entry (a dict the caller fills) for `config` on `mesh`
  trained by `method`; a fresh, unshared dict when the config cannot be
  keyed. The least recently used of more than MAX_ENTRIES entries goes."""
  config_key = _config_key(config, method)
  if config_key is None:
    return {}
  key = (config_key, tuple(d.id for d in mesh.devices.flat),
         tuple(mesh.axis_names), mesh.devices.shape,
         *(getattr(method, name, None) for name in _BUILDERS))
  if key in _ENTRIES:
    _ENTRIES.move_to_end(key)
  else:
    _ENTRIES[key] = {}
    while len(_ENTRIES) > MAX_ENTRIES:
      _ENTRIES.popitem(last=False)
  return _ENTRIES[key]


def signature(*trees) -> tuple:
  """Tree structures and (shape, dtype, sharding) of every leaf of `trees`."""
  out = []
  for tree in trees:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out.append((treedef, tuple(
        (tuple(x.shape), str(x.dtype), getattr(x, "sharding", None))
        for x in leaves)))
  return tuple(out)


def clear() -> None:
  """Forgets every entry (frees the executables)."""
  _ENTRIES.clear()
