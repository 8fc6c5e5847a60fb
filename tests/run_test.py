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


@pytest.mark.parametrize("config_name", [
    "sfc.py:smoke", "crw.py:smoke", "moco.py:smoke", "byol.py:smoke",
    "liir.py:smoke", "mask_vos.py:smoke"])
def test_method_trains_and_evaluates(tmp_path, config_name):
  config = _config(config_name)
  n = config.total_steps
  lines = []
  out = run.train_and_evaluate(config, str(tmp_path), log=lines.append)
  assert any(l.startswith(f"step {n}/{n} | loss") for l in lines), lines
  assert checkpointing.complete_steps(tmp_path)[-1] == n
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
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(tmp_path))
  if config_name.startswith("moco"):  # The queue is in the checkpoint.
    state = ocp.StandardCheckpointer().restore(
        os.path.join(tmp_path, "checkpoints", "4", "default"))
    queue = np.asarray(state["extra"]["queue"])
    assert queue.shape == (16, 8)  # Smoke: K = 16 keys of dimension 8.
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0,
                               rtol=1e-5)
    assert int(state["extra"]["queue_ptr"]) == (4 * 8) % 16

  # --mode=eval on the workdir reads the saved predictions back.
  again = []
  evaluated = run.evaluate_workdir(config, str(tmp_path), log=again.append)
  assert evaluated["synthetic"]["trained"]["table"] == scored["table"]
  assert sum("(saved predictions)" in l for l in again) == 2, again


_SOURCE = {}


def _warm_start_source(tmp_path_factory) -> str:
  """Workdir of one FC :smoke run without evaluation, shared by the warm
  start tests (made once: tests run file by file, `--dist loadfile`)."""
  if not _SOURCE:
    source = str(tmp_path_factory.mktemp("source"))
    config = _config("sfc.py:smoke")
    config.evals = config_defaults.evals()
    run.train_and_evaluate(config, source, log=_quiet)
    _SOURCE["workdir"] = source
  return _SOURCE["workdir"]


def test_warm_start_copies_and_freezing_keeps_the_encoder(tmp_path,
                                                         tmp_path_factory):
  source = _warm_start_source(tmp_path_factory)
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


def test_warm_start_reports_a_missing_subtree(tmp_path, tmp_path_factory):
  config = _config("sfc.py:smoke")
  config.evals = config_defaults.evals()
  config.model_init.path = _warm_start_source(tmp_path_factory)
  config.model_init.subtrees = ("params/encoder=params/nope",)
  with pytest.raises(ValueError, match="has no 'params/nope'"):
    run.train_and_evaluate(config, str(tmp_path / "warm"), log=_quiet)


def test_liir_stage2_copies_the_semantic_head_into_the_momentum_head(
    tmp_path):
  stage1 = str(tmp_path / "stage1")
  config = _config("liir.py:smoke")
  config.evals = config_defaults.evals()
  # The smoke length: the end-to-end test's step executable (cache hit).
  run.train_and_evaluate(config, stage1, log=_quiet)
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
