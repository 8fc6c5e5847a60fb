"""Mask-VOS method draft: smoke config, synthetic batches, one train step."""

import jax
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import optim
from corrjax.methods import mask_vos

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_one_step_on_the_smoke_config(repo_root):
  config = config_defaults.load(f"{repo_root}/configs/mask_vos.py:smoke")
  model = mask_vos.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state = jax.jit(lambda r: mask_vos.init_state(
      r, model=model, tx=tx, config=config))(jax.random.key(0))
  batches, _ = mask_vos.make_batches(config, start_step=0)
  batch = next(batches)
  s = config.data.crop_size
  assert batch["seg_frames"].shape == (4, 3, s, s, 3)
  assert batch["seg_masks"].shape == (4, 3, s, s)
  assert batch["short_frames"].shape == batch["long_frames"].shape
  step = jax.jit(mask_vos.bind_train_step(config, model=model, tx=tx,
                                          schedule=schedule))
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1
  for name in ("loss", "seg_loss", "short_loss", "long_loss"):
    assert np.isfinite(float(metrics[name])), name
  # Eq. 16 with the config's weights.
  np.testing.assert_allclose(
      metrics["loss"], metrics["seg_loss"] + 0.1 * metrics["short_loss"] +
      0.5 * metrics["long_loss"], rtol=1e-5)
