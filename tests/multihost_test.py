"""Multi-host training simulated on localhost: 2 processes x 2 CPU devices.

Both hosts are killed mid-run, restarted, and must reach the parameters of
one process with 4 devices (up to float reduction order: gloo's all-reduce
sums in another order than XLA's in-process one). Drives corrjax.train.train
through tests/multihost_worker.py, since `corrjax.main --multihost` cannot
yet be told the coordinator, process count and id on localhost.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multihost_worker.py")


def _env():
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
             JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env.pop("XLA_FLAGS", None)
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _hosts(workdir, out, port):
  return [subprocess.Popen(
      [sys.executable, WORKER, str(i), "2", str(port), str(workdir), "2",
       str(out)], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]


def _run_hosts(workdir, out, kill_after_step=None, timeout=400):
  """Runs both hosts; SIGKILLs both once host 0 logs `kill_after_step`."""
  hosts = _hosts(workdir, out, _free_port())
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


@pytest.mark.slow
def test_two_hosts_killed_and_resumed_match_one_host(tmp_path):
  ref = tmp_path / "one.npz"
  proc = subprocess.run(
      [sys.executable, WORKER, "0", "1", "0", str(tmp_path / "one"), "4",
       str(ref)], cwd=REPO, env=_env(), capture_output=True, text=True,
      timeout=400)
  assert proc.returncode == 0, proc.stderr[-3000:]

  workdir, out = tmp_path / "two", tmp_path / "two.npz"
  log0, _, hosts = _run_hosts(workdir, out, kill_after_step=3)
  assert all(h.returncode == -signal.SIGKILL for h in hosts), log0[-3000:]
  assert not out.exists()
  log0, log1, hosts = _run_hosts(workdir, out)
  assert [h.returncode for h in hosts] == [0, 0], (log0 + log1)[-3000:]
  assert "resumed from step 2" in log0
  assert "step " not in log1  # Logs come from host 0 only.
  # One checkpoint per saved step, written once for both hosts.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]

  one, two = np.load(ref), np.load(out)
  assert int(two["step"]) == int(one["step"]) == 4
  assert sorted(one.files) == sorted(two.files)
  for key in one.files:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5,
                               err_msg=key)
