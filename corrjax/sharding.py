"""Device mesh and shardings for jit-compiled, globally sharded steps.

The train state is replicated by default; `rules` may shard any leaf whose
'/'-joined path matches a regex (e.g. ZeRO-style optimiser sharding on pods).
Batches are sharded along their leading axis over the 'data' mesh axis, so
BatchNorm statistics and losses are computed over the global batch.
"""

from collections.abc import Sequence
import re

import jax
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXIS = "data"


def make_mesh(shape: Sequence[int], axes: Sequence[str],
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh of `shape` (one -1 entry takes the remaining devices).

  Axis types are Auto (big_vision/maxtext semantics; jax >= 0.10 defaults to
  Explicit, under which shard_map on unsharded inputs fails).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axes):
    raise ValueError(f"mesh.shape {tuple(shape)} and mesh.axes {tuple(axes)} "
                     "must have the same length.")
  if DATA_AXIS not in axes:
    raise ValueError(f"mesh.axes {tuple(axes)} must contain {DATA_AXIS!r}.")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape {tuple(shape)} may hold at most one -1.")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f"mesh.shape {tuple(shape)} does not use all "
                     f"{len(devices)} devices.")
  grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, tuple(axes), axis_types=(AxisType.Auto,) * len(axes))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over the 'data' axis, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises a one-line error when the batch does not split over devices."""
  n = mesh.shape[DATA_AXIS]
  if global_batch_size % n or global_batch_size % jax.process_count():
    raise ValueError(
        f"batch size {global_batch_size} is not divisible by the {n} devices "
        f"of the mesh's {DATA_AXIS!r} axis ({jax.process_count()} hosts).")


def infer_state_sharding(abstract_state, mesh: Mesh,
                         rules: Sequence[tuple[str, Sequence]] = ()):
  """NamedShardings for a pytree: first matching (regex, spec) rule wins.

  Args:
    abstract_state: pytree of arrays or ShapeDtypeStructs.
    mesh: the device mesh.
    rules: (regex, partition spec tuple) pairs matched against the leaf's
      path, keys joined by '/', e.g. ("opt_state/.*/kernel", (None, None,
      None, "data")). Unmatched leaves are replicated.

  Returns:
    A pytree of NamedSharding with the structure of `abstract_state`.
  """
  compiled = [(re.compile(pattern), P(*spec)) for pattern, spec in rules]

  def leaf_sharding(path, _):
    name = "/".join(_key_name(k) for k in path)
    for pattern, spec in compiled:
      if pattern.fullmatch(name):
        return NamedSharding(mesh, spec)
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_state)


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def shard_host_batch(batch, sharding: NamedSharding):
  """This host's slice of the global batch -> global jax.Arrays."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
