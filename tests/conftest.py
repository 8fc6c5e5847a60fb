"""Test setup: 4 fake CPU devices before JAX starts, shared fixtures."""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Compile time is most of this suite's time (tiny networks, a few steps), so
# XLA is asked to compile fast for every test and for the command-line
# subprocesses (they inherit the environment):
# - JAX_DISABLE_MOST_OPTIMIZATIONS: XLA's optimisation passes cost more than
#   they save at these sizes (a ResNet-10 init compiles in 2 s, not 17 s);
# - --xla_cpu_use_fusion_emitters=false: the older elemental emitters halve
#   the CPU compile time of a train step (FC smoke: 2.4 s instead of 5.4 s).
# Parity tolerances hold under both (the suite passes unchanged); resume and
# 1-vs-4-device tests compare runs compiled the same way.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_use_fusion_emitters=false").strip()

# One XLA compilation cache for the whole session: the pytest-xdist workers
# and the command-line subprocesses compile the same tiny train steps many
# times. Executables are keyed by their HLO and compile options, so a hit
# runs the very code a miss would compile. The controller (the process
# without PYTEST_XDIST_WORKER) makes the folder and removes it at the end.
# Only compiles over a second are written (writing every small eager op's
# executable cost more than it saved), and there is no size limit: with one,
# jax rescans the whole folder on every write (quadratic in the entries;
# that doubled the time of tests/ops + tests/losses). A torn read of an entry
# being written is a warning and a recompile, never a wrong executable.
_OWN_CACHE = None
if ("PYTEST_XDIST_WORKER" not in os.environ
    and "JAX_COMPILATION_CACHE_DIR" not in os.environ):
  _OWN_CACHE = tempfile.mkdtemp(prefix="corrjax-test-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")

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


def _check_trained_and_evaluated(config, workdir, out, log_lines) -> None:
  """What one `run.train_and_evaluate(config, workdir)` of a `:smoke`
  config must leave behind: the last step trained and checkpointed, the
  synthetic benchmark scored (predictions, overlays, CSVs, protocol),
  TensorBoard events; and `--mode=eval` on the workdir reads the saved
  predictions back to the same table. `out` is the run's return value,
  `log_lines` what it logged."""
  # pylint: disable=g-import-not-at-top
  from corrjax import checkpointing
  from corrjax import run
  # pylint: enable=g-import-not-at-top
  n = config.total_steps
  assert any(l.startswith(f"step {n}/{n} | loss") for l in log_lines), (
      log_lines)
  assert checkpointing.complete_steps(workdir)[-1] == n
  scored = out["synthetic"]["trained"]
  assert 0.0 <= scored["table"]["J&F"] <= 1.0
  folder = scored["folder"]
  assert os.path.basename(folder).startswith(f"step_{n}-")
  for name in ("results.json", "global_results-val.csv",
               "per-sequence_results-val.csv", "protocol.json"):
    assert os.path.isfile(os.path.join(folder, name)), name
  videos = [d for d in os.listdir(folder) if d.startswith("synth_")]
  assert len(videos) == 2
  assert len(os.listdir(os.path.join(folder, videos[0]))) == 6
  assert len(os.listdir(os.path.join(folder, "overlays"))) == 2
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))

  again = []
  evaluated = run.evaluate_workdir(config, str(workdir), log=again.append)
  assert evaluated["synthetic"]["trained"]["table"] == scored["table"]
  assert sum("(saved predictions)" in l for l in again) == 2, again


@pytest.fixture
def check_trained_and_evaluated():
  """`_check_trained_and_evaluated`, for the end-to-end tests of
  tests/run_test.py and of Mask-VOS's schedule (its one smoke run)."""
  return _check_trained_and_evaluated
