"""Multi-host training simulated on localhost: `corrjax.main --multihost` in
2 processes x 2 CPU devices (gloo collectives), through
tests/multihost_worker.py (the entry point plus a per-host batch check).

Both hosts are killed mid-run, restarted, and must reach the parameters of
one process with 4 devices (up to float reduction order: gloo's all-reduce
sums in another order than XLA's in-process one).
"""

import os
import signal
import socket
import subprocess
import sys
import time

from absl import app
import jax
import numpy as np
import pytest

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import main
from corrjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multihost_worker.py")
# FC :smoke, 4 steps, checkpoints every 2, no evaluation. SGD, not FC's
# Adam: Adam scales the float noise of the near-zero gradients (zero-
# initialised last BN of each block) up to whole steps, so reduction order
# alone would move weights by ~lr.
OVERRIDES = {"optim.name": "sgd", "optim.learning_rate": 0.1,
             "optim.momentum": 0.9, "log_every_steps": 1,
             "evals.synthetic.source": "none"}


def _env():
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
             JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  # Each worker sets its own device count; keep tests/conftest.py's
  # compile-time flags only.
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if "device_count" not in f)
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_hosts(workdir, kill_after_step=None, timeout=300):
  """Both hosts of one run; SIGKILLs both once host 0 logs
  `kill_after_step`. Returns (host 0 output, host 1 output, processes)."""
  port = _free_port()
  hosts = [subprocess.Popen(
      [sys.executable, WORKER, "2", "4", "--multihost",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       f"--process_id={i}", "--config=configs/fc.py:smoke",
       f"--workdir={workdir}"]
      + [f"--config.{k}={v}" for k, v in OVERRIDES.items()],
      cwd=REPO, env=_env(), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  lines = []
  deadline = time.time() + timeout
  for line in hosts[0].stdout:
    lines.append(line)
    if kill_after_step and line.startswith(f"step {kill_after_step}/"):
      for h in hosts:
        h.send_signal(signal.SIGKILL)
      break
    assert time.time() < deadline, "".join(lines[-20:])
  others = [h.communicate(timeout=timeout)[0] for h in hosts]
  return "".join(lines) + (others[0] or ""), others[1] or "", hosts


def _params(workdir):
  step, tree = checkpointing.restore_tree(str(workdir))
  flat = jax.tree_util.tree_flatten_with_path(tree["params"])[0]
  return step, {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


@pytest.mark.slow
def test_two_hosts_killed_and_resumed_match_one_host(tmp_path):
  workdir = tmp_path / "two"
  log0, _, hosts = _run_hosts(workdir, kill_after_step=3)
  assert all(h.returncode == -signal.SIGKILL for h in hosts), log0[-3000:]
  log0, log1, hosts = _run_hosts(workdir)
  assert [h.returncode for h in hosts] == [0, 0], (log0 + log1)[-3000:]
  assert "resumed from step 2" in log0
  assert "step 4/" in log0
  # Lines, the log file and TensorBoard are process 0's.
  assert "step " not in log1 and "corrjax train" not in log1, log1
  with open(workdir / "corrjax.log") as f:
    assert f.read().count("resumed from step 2") == 1
  # One checkpoint per saved step, written once for both hosts.
  assert checkpointing.complete_steps(str(workdir)) == [2, 4]

  # One process, 4 devices, same config: here, in-process.
  config = config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))
  for key, value in OVERRIDES.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  train.train(config, str(tmp_path / "one"), log=lambda message: None)
  (step1, one), (step2, two) = _params(tmp_path / "one"), _params(workdir)
  assert step1 == step2 == 4
  assert sorted(one) == sorted(two)
  for key in one:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5,
                               err_msg=key)


def test_multihost_needs_all_three_flags_off_a_pod():
  with pytest.raises(app.UsageError, match=r"needs all of.*got "
                     r"--coordinator_address, --num_processes\."):
    main._initialize_distributed(  # pylint: disable=protected-access
        "127.0.0.1:1234", 2, None)
