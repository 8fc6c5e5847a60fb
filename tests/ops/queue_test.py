"""MoCo's key queue: enqueue order, wrap-around, sharding invariance.

The expected queue is simulated with numpy from facebookresearch/moco@7397dfe
`moco/builder.py:65-79` on the reference's [D, K] layout:
queue[:, ptr:ptr + B] = keys.T; ptr = (ptr + B) % K.
"""

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from corrjax import sharding
from corrjax.ops import queue as queue_lib


def _reference_enqueue(queue_dk, ptr, keys):
  queue_dk = queue_dk.copy()
  b = keys.shape[0]
  assert queue_dk.shape[1] % b == 0
  queue_dk[:, ptr:ptr + b] = keys.T
  return queue_dk, (ptr + b) % queue_dk.shape[1]


def _batches(n, b, d, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal((b, d)).astype(np.float32) for _ in range(n)]


def test_init_is_unit_rows_and_zero_pointer():
  state = queue_lib.init_queue(jax.random.key(0), size=12, dim=5)
  assert state["queue"].shape == (12, 5)
  np.testing.assert_allclose(np.linalg.norm(state["queue"], axis=1), 1.0,
                             rtol=1e-6)
  assert int(state["queue_ptr"]) == 0 and state["queue_ptr"].dtype == np.int32


def test_order_and_wrap_around_match_the_reference():
  k, b, d = 12, 4, 3
  state = queue_lib.init_queue(jax.random.key(1), size=k, dim=d)
  queue, ptr = state["queue"], state["queue_ptr"]
  ref_queue, ref_ptr = np.asarray(queue).T, 0
  step = jax.jit(queue_lib.enqueue)
  for keys in _batches(5, b, d):  # 5 batches of 4 into 12 slots: wraps.
    queue, ptr = step(queue, ptr, keys)
    ref_queue, ref_ptr = _reference_enqueue(ref_queue, ref_ptr, keys)
    np.testing.assert_array_equal(np.asarray(queue), ref_queue.T)
    assert int(ptr) == ref_ptr
  assert int(ptr) == 8  # 5 * 4 mod 12.


def test_queue_size_must_be_a_multiple_of_the_batch():
  state = queue_lib.init_queue(jax.random.key(0), size=10, dim=3)
  with pytest.raises(ValueError, match="multiple of the global batch"):
    queue_lib.enqueue(state["queue"], state["queue_ptr"],
                      np.zeros((4, 3), np.float32))
  with pytest.raises(ValueError, match="dimension 2"):
    queue_lib.enqueue(state["queue"], state["queue_ptr"],
                      np.zeros((5, 2), np.float32))


@pytest.mark.parametrize("queue_spec", [P(), P("data", None)])
def test_sharded_over_four_devices_equals_single_device(queue_spec):
  assert jax.device_count() == 4
  k, b, d = 32, 8, 4
  init = queue_lib.init_queue(jax.random.key(2), size=k, dim=d)
  batches = _batches(6, b, d, seed=3)

  def run(mesh, spec):
    queue_sh, repl = NamedSharding(mesh, spec), sharding.replicated(mesh)
    keys_sh = sharding.batch_sharding(mesh)
    step = jax.jit(queue_lib.enqueue, in_shardings=(queue_sh, repl, keys_sh),
                   out_shardings=(queue_sh, repl))
    queue = jax.device_put(init["queue"], queue_sh)
    ptr = jax.device_put(init["queue_ptr"], repl)
    for keys in batches:
      queue, ptr = step(queue, ptr, jax.device_put(keys, keys_sh))
    assert queue.sharding.is_equivalent_to(queue_sh, 2)
    return np.asarray(queue), int(ptr)

  one = run(sharding.make_mesh((-1,), ("data",), jax.devices()[:1]), P())
  four = run(sharding.make_mesh((-1,), ("data",)), queue_spec)
  np.testing.assert_array_equal(one[0], four[0])
  assert one[1] == four[1] == (6 * b) % k
  # The last batch sits at rows [8, 16) in batch order (6 * 8 = 48 = 32 + 16).
  np.testing.assert_array_equal(four[0][8:16], batches[-1])
