"""A run is never lost: signals at any moment, during a save, a closed pipe.

In-process runs of `train.train` (one compile each, shared through the
session's compilation cache, tests/conftest.py) with SIGINT/SIGTERM/SIGHUP
sent to this process at chosen and at random moments; after each
interruption the newest checkpoint is complete and resuming reaches exactly
the parameters of an uninterrupted run. The closed-pipe case needs a real pipe, so it runs the CLI.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import console
from corrjax import interrupts
from corrjax import memory_budget
from corrjax import train


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


def _config(every=2):
  c = config_defaults.load(os.path.join(REPO, "configs/sfc.py:smoke"))
  c.total_steps, c.log_every_steps = STEPS, 1
  c.checkpoint_every_steps = every
  c.evals = config_defaults.evals()
  return c


def _params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  state = ocp.StandardCheckpointer().restore(path)
  return [state[k] for k in ("params", "batch_stats", "target_params",
                             "opt_state", "step")]


def _assert_same(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_REFERENCE = {}


@pytest.fixture
def reference(tmp_path_factory):
  """Parameters of the uninterrupted run (made once per worker)."""
  # Kept in a module global, not by fixture scope: an xdist worker tears
  # down even session fixtures whenever its queue of tests runs dry.
  if not _REFERENCE:
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    train.train(_config(), workdir, log=lambda m: None)
    _REFERENCE["params"] = _params(workdir, STEPS)
  return _REFERENCE["params"]


def _resume_and_compare(workdir, reference):
  lines = []
  train.train(_config(), workdir, log=lines.append)
  steps = checkpointing.complete_steps(workdir)
  assert steps[-1] == STEPS, (steps, lines)
  # The step compiled by an earlier run of this process (corrjax/
  # compiled_steps.py) resumes to the very same parameters.
  assert any(l.startswith("compiled the train step") and "reused" in l
             for l in lines), lines
  _assert_same(_params(workdir, STEPS), reference)
  return lines


def _interrupted(workdir, send):
  """Runs until `send(line)` has signalled; returns the printed lines."""
  lines = []

  def log(line):
    lines.append(line)
    send(line)

  with pytest.raises(KeyboardInterrupt):
    train.train(_config(), workdir, log=log)
  assert not checkpointing.incomplete_steps(workdir), lines
  return lines


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_signal_mid_run_saves_and_resumes_identically(tmp_path, sig, reference):
  workdir = str(tmp_path / "run")
  sent = []

  def send(line):
    if line.startswith("step 3/") and not sent:
      sent.append(1)
      os.kill(os.getpid(), sig)

  lines = _interrupted(workdir, send)
  assert any(f"{sig.name} at step" in l for l in lines), lines
  # Step 3 is not a periodic step (every 2): the stop saved it.
  assert checkpointing.complete_steps(workdir) == [2, 3]
  # As if a later save had been killed (kill -9) half way.
  partial = os.path.join(workdir, "checkpoints",
                         "5.orbax-checkpoint-tmp-1234567")
  os.makedirs(os.path.join(partial, "default"))
  assert checkpointing.incomplete_steps(workdir) == [5]
  resumed = _resume_and_compare(workdir, reference)
  assert any("incomplete checkpoint of step 5" in l for l in resumed)
  assert "resumed from step 3" in resumed


@pytest.mark.slow
def test_signals_during_a_save_are_deferred_until_it_is_complete(
    tmp_path, monkeypatch, reference):
  workdir = str(tmp_path / "run")
  real_save = checkpointing.save
  calls = []

  def save_with_two_signals(manager, state, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # The save of step 4: SIGTERM then SIGINT inside.
      os.kill(os.getpid(), signal.SIGTERM)
      out = real_save(manager, state, **kwargs)
      os.kill(os.getpid(), signal.SIGINT)  # Would interrupt at once.
      return out
    return real_save(manager, state, **kwargs)

  monkeypatch.setattr(checkpointing, "save", save_with_two_signals)
  with pytest.raises(KeyboardInterrupt):
    train.train(_config(), workdir, log=lambda m: None)
  assert checkpointing.complete_steps(workdir) == [2, 4]
  assert not checkpointing.incomplete_steps(workdir)
  monkeypatch.setattr(checkpointing, "save", real_save)
  assert "resumed from step 4" in _resume_and_compare(workdir, reference)


@pytest.mark.slow
def test_signal_at_a_random_moment(tmp_path, reference):
  """Whenever the signal lands (compile, step, save), the run resumes."""
  workdir = str(tmp_path / "run")
  seed = time.time_ns() % 2**32  # Printed on failure.
  rng = random.Random(seed)
  lines = [f"seed {seed}"]
  started = []

  def send(line):
    if line.startswith("compiled") and not started:
      started.append(1)
      delay = rng.uniform(0.0, 0.6)
      sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
      threading.Timer(delay, os.kill, (os.getpid(), sig)).start()

  def log(line):
    lines.append(line)
    send(line)

  with interrupts.StopRequest():  # Absorbs a signal after the run ended.
    try:
      train.train(_config(every=1), workdir, log=log)
    except KeyboardInterrupt:
      pass
    time.sleep(0.7)  # Let a late timer fire before the resume starts.
  assert not checkpointing.incomplete_steps(workdir), lines
  _resume_and_compare(workdir, reference)


@pytest.mark.slow
def test_step_that_does_not_fit_stops_before_training(tmp_path, monkeypatch):
  monkeypatch.setenv(memory_budget.ENV, "1M")
  workdir = str(tmp_path / "run")
  with pytest.raises(MemoryError) as e:
    train.train(_config(), workdir, log=lambda m: None)
  message = str(e.value)
  assert "\n" not in message
  assert "config.data.batch_size" in message and "1 MiB" in message
  assert checkpointing.complete_steps(workdir) == []


def test_parse_bytes():
  assert memory_budget.parse_bytes("512M") == 512 * 2**20
  assert memory_budget.parse_bytes("2GiB") == 2 * 2**30
  assert memory_budget.parse_bytes("1000") == 1000


def test_console_survives_a_closed_pipe_and_reports_it_once(tmp_path):
  script = (
      "import os, sys\n"
      "from corrjax import console\n"
      "reasons = []\n"
      "log = console.Console(on_broken=reasons.append)\n"
      f"log.attach({str(tmp_path / 'run.log')!r})\n"
      "sys.stdin.readline()\n"  # The reader has gone when this returns.
      "for i in range(1000): log(f'line {i}')\n"
      "log.error('still fine')\n"
      "print('after', flush=True)\n"
      "open(sys.argv[1], 'w').write(repr(reasons))\n")
  result_path = tmp_path / "reasons"
  proc = subprocess.Popen(
      [sys.executable, "-c", script, str(result_path)], cwd=REPO,
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=dict(os.environ, PYTHONPATH=REPO))
  proc.stdout.close()  # The reader (tee) dies.
  proc.stdin.write(b"go\n")
  proc.stdin.close()
  assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
  assert result_path.read_text() == "['EPIPE']"
  assert "line 999" in (tmp_path / "run.log").read_text()


def test_stop_request_defers_a_second_signal_inside_critical():
  with interrupts.StopRequest() as stop:
    with pytest.raises(KeyboardInterrupt):
      with stop.critical():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)  # Deferred to the end.
        marker = "reached"
    assert marker == "reached"


def test_console_is_importable_without_jax():
  assert console.Console()("x") is None
