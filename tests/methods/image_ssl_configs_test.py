"""The MoCo and BYOL configs are the reference recipes (their smoke runs
are in tests/run_test.py)."""

import os

import pytest

from corrjax import config_defaults
from corrjax.data import image_views

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


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
