"""Test setup: 4 fake CPU devices before JAX starts, shared fixtures."""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One XLA compilation cache for the whole session: the pytest-xdist workers
# and the command-line subprocesses (which inherit the environment) compile
# the same tiny train steps many times. Executables are keyed by their HLO
# and compile options, so a hit runs the very code a miss would compile.
# The controller (the process without PYTEST_XDIST_WORKER) makes the folder
# and removes it at the end; a cache size enables jax's file lock, so two
# workers never read a half-written entry.
_OWN_CACHE = None
if ("PYTEST_XDIST_WORKER" not in os.environ
    and "JAX_COMPILATION_CACHE_DIR" not in os.environ):
  _OWN_CACHE = tempfile.mkdtemp(prefix="corrjax-test-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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
