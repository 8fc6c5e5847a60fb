"""Test setup: 4 fake CPU devices before JAX starts, shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data_root() -> str:
  """$CORRJAX_DATA, or skip the test when it is unset."""
  root = os.environ.get("CORRJAX_DATA")
  if not root:
    pytest.skip("CORRJAX_DATA is not set (the real-data folder, e.g. "
                "../shared/data)")
  if not os.path.isdir(root):
    pytest.skip(f"CORRJAX_DATA={root!r} is not a folder")
  return root


@pytest.fixture
def repo_root() -> str:
  return REPO


@pytest.fixture(scope="module")
def fast_compile():
  """Tiny networks: XLA's optimisations cost more compile time than they
  save (~3x). Opt in per module with
  `pytestmark = pytest.mark.usefixtures("fast_compile")`; not for modules
  whose tolerances assume the optimised summation order (the subprocess CLI
  tests set JAX_DISABLE_MOST_OPTIMIZATIONS themselves)."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)
