"""The in-process memo of compiled train steps (corrjax/compiled_steps.py):
which configs share an entry, and a rerun in one process reusing the step."""

import os

import jax
import pytest

from corrjax import compiled_steps
from corrjax import config_defaults
from corrjax import methods
from corrjax import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name="crw"):
  return config_defaults.load(os.path.join(REPO, f"configs/{name}.py:smoke"))


@pytest.fixture
def mesh():
  return sharding.make_mesh((-1,), ("data",))


def test_loop_only_fields_share_an_entry(mesh):
  compiled_steps.clear()
  method = methods.get("crw")
  a = compiled_steps.entry(_config(), mesh, method)
  a["marker"] = 1
  c = _config()
  c.log_every_steps, c.checkpoint_every_steps, c.keep_checkpoints = 7, 3, 9
  c.evals = config_defaults.evals()
  c.model_init.path = "/somewhere/else"
  c.data.root, c.data.num_threads = "/other/frames", 1
  assert compiled_steps.entry(c, mesh, method) is a


@pytest.mark.parametrize("change", [
    lambda c: setattr(c.optim, "learning_rate", 0.5),
    lambda c: setattr(c, "seed", 3),  # The initial state.
    lambda c: setattr(c.data, "crop_size", c.data.crop_size * 2),
    lambda c: setattr(c.model, "width", c.model.width * 2),
])
def test_what_shapes_the_step_gets_its_own_entry(mesh, change):
  compiled_steps.clear()
  method = methods.get("crw")
  a = compiled_steps.entry(_config(), mesh, method)
  c = _config()
  change(c)
  assert compiled_steps.entry(c, mesh, method) is not a


def test_total_steps_counts_where_the_step_reads_it(mesh):
  compiled_steps.clear()
  longer = lambda c: c.update(total_steps=c.total_steps + 7)  # pylint: disable=g-long-lambda
  for name, shared in (("mask_vos", True), ("crw", True), ("liir", True),
                       ("fc", False),  # EMA schedule over total_steps.
                       ("byol", False)):
    method = methods.get(_config(name).method)
    a = compiled_steps.entry(_config(name), mesh, method)
    c = _config(name)
    longer(c)
    assert (compiled_steps.entry(c, mesh, method) is a) == shared, name
    # A cosine learning rate decays over total_steps.
    cosine = _config(name)
    cosine.optim.schedule = "cosine"
    b = compiled_steps.entry(cosine, mesh, method)
    longer(cosine)
    assert compiled_steps.entry(cosine, mesh, method) is not b, name


def test_another_mesh_or_a_patched_method_gets_its_own_entry(mesh,
                                                             monkeypatch):
  compiled_steps.clear()
  method = methods.get("crw")
  a = compiled_steps.entry(_config(), mesh, method)
  one = sharding.make_mesh((-1,), ("data",), jax.devices()[:1])
  assert compiled_steps.entry(_config(), one, method) is not a
  monkeypatch.setattr(method, "train_step", lambda *a, **k: None)
  assert compiled_steps.entry(_config(), mesh, method) is not a


def test_at_most_max_entries_are_kept(mesh, monkeypatch):
  compiled_steps.clear()
  monkeypatch.setattr(compiled_steps, "MAX_ENTRIES", 2)
  method = methods.get("crw")
  entries = []
  for seed in range(3):
    c = _config()
    c.seed = seed
    entries.append(compiled_steps.entry(c, mesh, method))
  c = _config()
  c.seed = 0  # The oldest: evicted, a fresh entry now.
  assert compiled_steps.entry(c, mesh, method) is not entries[0]
  c.seed = 2
  assert compiled_steps.entry(c, mesh, method) is entries[2]


def test_signature_tells_shapes_dtypes_and_shardings_apart(mesh):
  x = jax.numpy.zeros((4, 2))
  same = compiled_steps.signature({"x": jax.numpy.ones((4, 2))})
  assert compiled_steps.signature({"x": x}) == same
  assert compiled_steps.signature({"x": x[:2]}) != same
  assert compiled_steps.signature({"x": x.astype("bfloat16")}) != same
  assert compiled_steps.signature({"y": x}) != same
  sharded = jax.device_put(x, sharding.batch_sharding(mesh))
  assert compiled_steps.signature({"x": sharded}) != same
