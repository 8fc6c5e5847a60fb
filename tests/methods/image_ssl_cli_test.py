"""The command line on the MoCo and BYOL smoke configs: train, evaluate."""

import os
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from corrjax import config_defaults
from corrjax.data import image_views

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _cli(*args):
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
             JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run([sys.executable, "-m", "corrjax.main", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.slow
def test_moco_smoke_trains_evaluates_and_checkpoints_the_queue(tmp_path):
  result = _cli("--config=configs/moco.py:smoke", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "step 4/4 | loss" in result.stdout
  assert "J&F" in result.stdout and "trained" in result.stdout
  state = ocp.StandardCheckpointer().restore(
      os.path.join(tmp_path, "checkpoints", "4", "default"))
  queue = np.asarray(state["extra"]["queue"])
  assert queue.shape == (16, 8)  # Smoke: K = 16 keys of dimension 8.
  np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
  assert int(state["extra"]["queue_ptr"]) == (4 * 8) % 16


@pytest.mark.slow
def test_byol_smoke_trains_and_evaluates(tmp_path):
  result = _cli("--config=configs/byol.py:smoke", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "step 4/4 | loss" in result.stdout
  assert "J&F" in result.stdout and "trained" in result.stdout
  assert os.path.isfile(os.path.join(tmp_path, "eval", "step_4",
                                     "results.json"))


def test_default_configs_are_the_reference_recipes_and_need_a_root():
  moco = config_defaults.load(os.path.join(REPO, "configs/moco.py"))
  assert (moco.moco.queue_size, moco.moco.momentum, moco.moco.temperature,
          moco.data.batch_size) == (65_536, 0.999, 0.2, 256)
  assert (moco.optim.name, moco.optim.learning_rate, moco.optim.momentum,
          moco.optim.weight_decay, moco.optim.schedule) == (
              "sgd", 0.03, 0.9, 1e-4, "cosine")
  assert moco.total_steps == 200 * 5004 and moco.model.arch == "resnet50"
  assert tuple(moco.data.crop_scale) == (0.2, 1.0)
  byol = config_defaults.load(os.path.join(REPO, "configs/byol.py"))
  assert (byol.model.projection_hidden_dim, byol.model.projection_dim,
          byol.model.prediction_hidden_dim, byol.ema.base_momentum) == (
              4096, 256, 4096, 0.996)
  assert (byol.data.view1.blur_prob, byol.data.view2.blur_prob,
          byol.data.view2.solarize_prob) == (1.0, 0.1, 0.2)
  for config in (moco, byol):
    with pytest.raises(ValueError, match="config.data.root is empty"):
      image_views.image_source(config.data)
