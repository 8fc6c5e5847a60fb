"""End-to-end tests of the command line: train, evaluate, interrupt, resume.

Each test runs `python -m corrjax.main` in a subprocess, as a user would;
the uninterrupted run that interrupted runs are compared with is made in
this process (on the same 4 CPU devices, compiled the same way).
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_CONFIG = "configs/sfc.py:smoke"
SMOKE = f"--config={SMOKE_CONFIG}"
# Short resumable runs without evaluation: config overrides, and as flags.
RESUMABLE = {"total_steps": 24, "log_every_steps": 1,
             "evals.synthetic.source": "none"}
RESUMABLE_FLAGS = [f"--config.{k}={v}" for k, v in RESUMABLE.items()]


def _env():
  """This process's compile settings and its 4 CPU devices (tests/
  conftest.py), so that a CLI run compiles the same programs as an
  in-process run of the same config: equal results, and hits in the
  session's compilation cache."""
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
             JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=4").strip()
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _cli(*args, timeout=300):
  return subprocess.run(
      [sys.executable, "-m", "corrjax.main", *args], cwd=REPO, env=_env(),
      capture_output=True, text=True, timeout=timeout)


def _interrupt(args, when, sig: int | None, close_pipe: bool = False,
               cwd=REPO, env=None):
  """Starts the CLI, sends `sig` once `when(stdout line)` is true.

  With `close_pipe`, the reader of the CLI's output then goes away, as
  `tee` does on the same Ctrl-C in `corrjax.main ... | tee log`.
  """
  proc = subprocess.Popen(
      [sys.executable, "-m", "corrjax.main", *args], cwd=cwd,
      env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  lines = []
  deadline = time.time() + 300
  for line in proc.stdout:
    lines.append(line)
    if when(line):
      if sig is not None:
        proc.send_signal(sig)
      break
    assert time.time() < deadline, "".join(lines)
  if close_pipe:
    proc.stdout.close()
    return "".join(lines), proc.wait(timeout=120)
  rest, _ = proc.communicate(timeout=120)
  return "".join(lines) + rest, proc.returncode


def _params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  state = ocp.StandardCheckpointer().restore(path)
  return {k: state[k] for k in ("params", "batch_stats", "target_params",
                                "opt_state")}


def _assert_trees_equal(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_UNINTERRUPTED = {}


@pytest.fixture
def uninterrupted(tmp_path_factory):
  """The workdir of one uninterrupted run of the resumable config, made in
  this process on the same 4 devices as the CLI's (made once per worker;
  its compiled step is what the CLI runs then find in the cache)."""
  # Kept in a module global, not by fixture scope: an xdist worker tears
  # down even session fixtures whenever its queue of tests runs dry.
  if not _UNINTERRUPTED:
    reference = tmp_path_factory.mktemp("uninterrupted")
    config = config_defaults.load(os.path.join(REPO, SMOKE_CONFIG))
    config.update_from_flattened_dict(RESUMABLE)
    config.checkpoint_every_steps = 100
    run.train_and_evaluate(config, str(reference), log=lambda m: None)
    assert checkpointing.complete_steps(reference) == [24]
    _UNINTERRUPTED["workdir"] = reference
  return _UNINTERRUPTED["workdir"]


def _installed_elsewhere(tmp_path):
  """(folder, environment) to run the CLI outside the clone, with the
  package importable as `pip install -e .` makes it (corrjax only, not
  configs/, whose files import each other)."""
  site, outside = tmp_path / "site", tmp_path / "elsewhere"
  site.mkdir()
  outside.mkdir()
  os.symlink(os.path.join(REPO, "corrjax"), site / "corrjax")
  return outside, dict(_env(), PYTHONPATH=str(site))


@pytest.mark.slow
def test_interrupted_runs_resume_to_the_same_parameters(tmp_path,
                                                       uninterrupted):
  """The README's main command (smoke-sized, run from another folder into
  its default workdir), interrupted three times and resumed each time by
  the same command: Ctrl-C on `corrjax.main | tee log` (SIGINT, then the
  reader goes away), the reader alone dying (`| head`: EPIPE stops the
  run), and `kill -9` (only the last periodic checkpoint, every 4 steps, is
  left). SIGINT and EPIPE save a checkpoint on the way out. The last resume
  reaches the parameters of the uninterrupted run, then evaluates (trained
  and random init), labelled and without library noise."""
  outside, env = _installed_elsewhere(tmp_path)
  workdir = outside / "workdir" / "sfc_smoke"
  args = [f"--config={os.path.join(REPO, SMOKE_CONFIG)}", *RESUMABLE_FLAGS,
          "--config.checkpoint_every_steps=4"]

  def newest():
    steps = checkpointing.complete_steps(workdir)
    return max(steps) if steps else 0

  resumed_from = 0
  for sig, close_pipe, stop_step in ((signal.SIGINT, True, 3),
                                     (None, True, 6),
                                     (signal.SIGKILL, False, None)):
    if stop_step is None:  # kill -9 once a new periodic checkpoint exists.
      when = lambda line, done=resumed_from: newest() > done
    else:
      when = lambda line, n=stop_step: line.startswith(f"step {n}/")
    out, code = _interrupt(args, when, sig, close_pipe, outside, env)
    assert code != 0, out
    if resumed_from:
      assert f"resumed from step {resumed_from}" in out, out
    saved = newest()
    assert resumed_from < saved < 24, (resumed_from, saved, out)
    if stop_step is not None:  # Saved at the step it stopped after.
      assert saved >= stop_step, (saved, out)
      reason = "SIGINT" if sig == signal.SIGINT else "EPIPE"
      log = (workdir / "corrjax.log").read_text()
      assert f"{reason} at step" in log and "checkpoint saved" in log, log
    resumed_from = saved
  assert "Traceback" not in (workdir / "corrjax.log").read_text()

  resumed = subprocess.run(
      [sys.executable, "-m", "corrjax.main", *args,
       "--config.evals.synthetic.source=synthetic",
       "--config.evals.synthetic.random_init_baseline=true"],
      cwd=outside, env=env, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  out = resumed.stdout
  assert f"resumed from step {resumed_from}" in out
  _assert_trees_equal(_params(uninterrupted, 24), _params(workdir, 24))
  assert "Evaluating the FC network alone" in out
  assert "compiled the train step" in out and "step 24/24 | loss" in out
  assert "synthetic / trained: results in" in out
  assert "synthetic / random_init: results in" in out
  assert "no training" not in out
  noise = [l for l in resumed.stderr.splitlines() if "orbax" in l.lower()]
  assert not noise, noise
  assert os.path.isfile(workdir / "eval" / "synthetic" / "latest" /
                        "results.json")
  assert "step 24/24" in (workdir / "corrjax.log").read_text()


@pytest.mark.slow
def test_diverging_run_stops_with_a_clear_error(tmp_path):
  result = _cli(SMOKE, f"--workdir={tmp_path}", *RESUMABLE_FLAGS,
                "--config.optim.learning_rate=1e30",
                "--config.checkpoint_every_steps=100")
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("corrjax: error: non-finite") and "loss" in last
  # Nothing non-finite was saved.
  assert checkpointing.complete_steps(tmp_path) == []


def test_misspelled_config_key_is_rejected(tmp_path):
  result = _cli(SMOKE, f"--workdir={tmp_path}", "--config.optim.learnig_rate=1")
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()
  assert len(last) == 1, result.stderr
  assert last[0] == ("corrjax: error: bad --config (--config.optim.learnig_rate"
                     "=1): unknown key 'learnig_rate'; did you mean "
                     "'learning_rate'?")


@pytest.mark.parametrize("config,message", [
    ("configs/nope.py", "No such file or directory"),
    ("configs/sfc.py:smok", "Unknown config argument 'smok'"),
])
def test_bad_config_file_or_argument_is_one_line(config, message):
  result = _cli(f"--config={config}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("corrjax: error:")
  assert message in lines[0]


@pytest.mark.parametrize("root,message", [
    ("", "config.data.root is empty"),
    ("/nonexistent/frames", "does not exist"),
])
def test_bad_data_root_is_one_clear_line(tmp_path, root, message):
  result = _cli("--config=configs/fc.py", f"--workdir={tmp_path / 'w'}",
                f"--config.data.root={root}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("corrjax: error:") and message in lines[0]
  assert not os.path.exists(tmp_path / "w")  # Nothing was written.


def test_batch_not_divisible_by_devices_is_one_clear_line(tmp_path):
  env_flags = "--xla_force_host_platform_device_count=4"
  result = subprocess.run(
      [sys.executable, "-m", "corrjax.main", SMOKE, f"--workdir={tmp_path}",
       "--config.data.batch_size=6"], cwd=REPO, capture_output=True,
      text=True, timeout=300, env=dict(_env(), XLA_FLAGS=env_flags))
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 1
  assert "batch size 6 is not divisible by the 4 devices" in last


def test_unexpected_error_is_one_line_naming_the_log(tmp_path):
  """The CLI with a training that fails in an unforeseen way (patched in)."""
  workdir = tmp_path / "w"
  script = (
      "import sys\n"
      "from absl import app\n"
      "from corrjax import main, run\n"
      "def broken(*args, **kwargs):\n"
      "  raise RuntimeError('something deep\\nwent wrong')\n"
      "run.train_and_evaluate = broken\n"
      f"sys.argv = ['corrjax', '--config={REPO}/configs/sfc.py:smoke',\n"
      f"            '--workdir={workdir}']\n"
      "app.run(main.main, flags_parser=main.parse_flags)\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                          env=_env(), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 1, result.stderr[-2000:]
  log = workdir / "corrjax.log"
  assert result.stderr.strip().splitlines()[-1] == (
      f"corrjax: error: RuntimeError: went wrong (traceback in {log})")
  text = log.read_text()
  assert "Traceback" in text and "something deep" in text
