"""End to end in-process, one smoke config per method: train, checkpoint,
evaluate (predictions, overlays, CSVs, TensorBoard); then `--mode=eval`
and a warm start with frozen parameters. No subprocess (tests/main_test.py
keeps the command line's errors and interruptions)."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import networks
from corrjax import run
from corrjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name):
  return config_defaults.load(os.path.join(REPO, "configs", name))


def _quiet(_):
  pass


_TRAINED = {}  # config name -> workdir of its end-to-end run (below).


# Mask-VOS's end-to-end run is its schedule test's reference run
# (tests/methods/mask_vos_schedule_test.py), checked the same way.
@pytest.mark.slow
@pytest.mark.parametrize("config_name", [
    "sfc.py:smoke", "crw.py:smoke", "moco.py:smoke", "byol.py:smoke",
    "liir.py:smoke"])
def test_method_trains_and_evaluates(tmp_path, config_name,
                                     check_trained_and_evaluated):
  config = _config(config_name)
  lines = []
  out = run.train_and_evaluate(config, str(tmp_path), log=lines.append)
  check_trained_and_evaluated(config, tmp_path, out, lines)
  _TRAINED[config_name] = str(tmp_path)
  if config_name.startswith("moco"):  # The queue is in the checkpoint.
    state = ocp.StandardCheckpointer().restore(
        os.path.join(tmp_path, "checkpoints", "4", "default"))
    queue = np.asarray(state["extra"]["queue"])
    assert queue.shape == (16, 8)  # Smoke: K = 16 keys of dimension 8.
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0,
                               rtol=1e-5)
    assert int(state["extra"]["queue_ptr"]) == (4 * 8) % 16


def _trained(config_name, tmp_path_factory) -> str:
  """Workdir of a finished :smoke run of `config_name`: the end-to-end
  test's (tests of a file run in order on one worker, `--dist loadfile`),
  or, when that test did not run (`-k`), one made here without evaluation."""
  if config_name not in _TRAINED:
    workdir = str(tmp_path_factory.mktemp("trained"))
    config = _config(config_name)
    config.evals = config_defaults.evals()
    run.train_and_evaluate(config, workdir, log=_quiet)
    _TRAINED[config_name] = workdir
  return _TRAINED[config_name]


@pytest.mark.slow
def test_warm_start_copies_and_freezing_keeps_the_encoder(tmp_path,
                                                         tmp_path_factory):
  source = _trained("sfc.py:smoke", tmp_path_factory)
  _, trained = checkpointing.restore_tree(source)

  config = _config("sfc.py:smoke")
  config.evals = config_defaults.evals()
  config.seed = 1  # Another init: the copy must be visible.
  config.model_init.path = source
  config.model_init.subtrees = ("params/encoder", "batch_stats/encoder")
  config.optim.frozen = ("^encoder/",)
  lines = []
  run.train_and_evaluate(config, str(tmp_path / "warm"), log=lines.append)
  assert "model_init: params/encoder <- " + source + ":params/encoder" in lines
  _, warm = checkpointing.restore_tree(str(tmp_path / "warm"))
  # Frozen: the encoder's parameters are exactly the copied ones ...
  for a, b in zip(jax.tree_util.tree_leaves(trained["params"]["encoder"]),
                  jax.tree_util.tree_leaves(warm["params"]["encoder"])):
    np.testing.assert_array_equal(a, b)
  # ... while the rest trained from the new init.
  head_a = jax.tree_util.tree_leaves(trained["params"]["predictor"])
  head_b = jax.tree_util.tree_leaves(warm["params"]["predictor"])
  assert any(not np.array_equal(a, b) for a, b in zip(head_a, head_b))


@pytest.mark.slow
def test_warm_start_reports_a_missing_subtree(tmp_path, tmp_path_factory):
  config = _config("sfc.py:smoke")
  config.evals = config_defaults.evals()
  config.model_init.path = _trained("sfc.py:smoke", tmp_path_factory)
  config.model_init.subtrees = ("params/encoder=params/nope",)
  with pytest.raises(ValueError, match="has no 'params/nope'"):
    run.train_and_evaluate(config, str(tmp_path / "warm"), log=_quiet)


@pytest.mark.slow
def test_liir_stage2_copies_the_semantic_head_into_the_momentum_head(
    tmp_path, tmp_path_factory):
  stage1 = _trained("liir.py:smoke", tmp_path_factory)
  _, first = checkpointing.restore_tree(stage1)

  config = _config("liir.py:smoke,stage2")
  config.evals = config_defaults.evals()
  config.total_steps = 0  # Only the warm-started initial state.
  config.model_init.path = stage1
  state = train.train(config, str(tmp_path / "stage2"), log=_quiet)
  tree = networks.state_tree(state)
  for a, b in zip(jax.tree_util.tree_leaves(first["params"]),
                  jax.tree_util.tree_leaves(tree["params"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(
      jax.tree_util.tree_leaves(first["params"]["conv_semantic"]),
      jax.tree_util.tree_leaves(tree["extra"]["momentum"])):
    np.testing.assert_array_equal(a, b)
  assert int(tree["extra"]["queue"]["count"]) == 0  # A fresh queue.
