"""This host's batches of an index-addressed example function, on grain.

Every training pipeline (two-view crops, image views, clips) is an
`example_fn`: global example index -> dict of numpy arrays, a pure
function of (seed, index) and the data. `host_batches` maps train steps to
example indices, so the batch of a step is a pure function of (seed, step)
and a resumed run needs no iterator state:

  example = (train_step - 1) * global_batch + host * local + position,

for host h of n, local = global_batch / n, position in [0, local).

`BadItems` counts the unreadable items an example function skipped.
"""

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import grain
import jax

# What reading a corrupt file raises: OSError and PIL's / PyAV's decode
# errors (ValueError, SyntaxError).
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError)


def host_batches(example_fn: Callable[[int], dict[str, Any]], *,
                 global_batch_size: int, start_step: int, total_steps: int,
                 num_threads: int, prefetch: int
                 ) -> Iterator[dict[str, Any]]:
  """Iterator over this host's batches of train steps start_step + 1 ..

  Args:
    example_fn: global example index (int) -> dict of numpy arrays of
      fixed shapes; called from `num_threads` threads.
    global_batch_size: examples per step over all hosts; must divide by
      the host count.
    start_step: train steps already done (0 for a fresh run, the restored
      step when resuming): the first batch produced is that of train step
      start_step + 1.
    total_steps: the last train step; its batch is the last produced.
    num_threads: grain threads calling `example_fn`.
    prefetch: examples read ahead (at least `num_threads` are, so that
      every thread can work).

  Returns:
    Iterator of dicts of numpy arrays with leading dim
    global_batch_size / process_count: batch k (0-based) holds examples
    (start_step + k) * global_batch_size + host * local + [0, local).
  """
  hosts, host = jax.process_count(), jax.process_index()
  if global_batch_size % hosts:
    raise ValueError(f"batch size {global_batch_size} is not divisible by "
                     f"the {hosts} hosts.")
  local = global_batch_size // hosts

  def example_index(i):
    step, position = divmod(int(i), local)  # step: 0-based, = train step - 1.
    return step * global_batch_size + host * local + position

  dataset = (grain.MapDataset.range(start_step * local, total_steps * local)
             .map(example_index).map(example_fn)
             .batch(local, drop_remainder=True))
  # grain warns when the buffer is smaller than the thread count.
  options = grain.ReadOptions(num_threads=num_threads,
                              prefetch_buffer_size=max(prefetch, num_threads))
  return iter(dataset.to_iter_dataset(options))


class BadItems:
  """Thread-safe set of unreadable items, each warned about once.

  Example functions skip an item (frame, image, video) that fails to load
  and `record` it; the training loop reports how many were skipped.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._keys: set[Hashable] = set()

  def record(self, key: Hashable, message: str, *args) -> None:
    """Adds `key`; the first time, warns `message % (*args, count)`.

    Args:
      key: the item (e.g. a frame index).
      message: a logging format whose last field takes the number of items
        recorded so far, e.g. "skipping %s (%s); %d skipped so far".
      *args: the other fields.
    """
    with self._lock:
      first_time = key not in self._keys
      self._keys.add(key)
      count = len(self._keys)
    if first_time:
      logging.warning(message, *args, count)

  def keys(self) -> set[Hashable]:
    """A copy of the items recorded so far."""
    with self._lock:
      return set(self._keys)

  def __len__(self) -> int:
    with self._lock:
      return len(self._keys)
