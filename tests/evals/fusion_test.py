"""Late fusion of several networks' features (SFC), and its command line."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import pretrained
from corrjax import run
from corrjax.evals import features
from corrjax.models import resnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _random_fn(seed, channels, scale=1.0):
  """A fake extractor: frames [T, H, W, 3] -> unnormalised [T, H/8, W/8, C]."""
  def fn(frames):
    t, h, w, _ = frames.shape
    rng = np.random.default_rng(seed + int(frames.sum()) % 1000)
    return scale * rng.standard_normal((t, h // 8, w // 8, channels),
                                       dtype=np.float32)
  return fn


def test_fusion_matches_sfc_formula_in_torch():
  torch = pytest.importorskip("torch")
  frames = np.random.default_rng(0).integers(0, 255, (2, 32, 48, 3),
                                             dtype=np.uint8)
  fc, sem = _random_fn(1, 16, scale=3.0), _random_fn(2, 24, scale=0.2)
  ours = features.fuse_feature_fns([fc, sem], [1.75, 1.0])(frames)
  # SFC `code/test_vos.py:61-79`, channels first: [T, C, h, w].
  normalize = torch.nn.functional.normalize
  fc_t = normalize(torch.from_numpy(fc(frames)).permute(0, 3, 1, 2), dim=1)
  se_t = normalize(torch.from_numpy(sem(frames)).permute(0, 3, 1, 2), dim=1)
  ref = normalize(torch.cat((fc_t * 1.75, se_t), dim=1), dim=1)
  np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(),
                             rtol=1e-6, atol=1e-6)


def test_fused_similarity_is_weighted_mean_of_cosines():
  frames = np.zeros((1, 16, 16, 3), np.uint8)
  a, b = _random_fn(3, 8), _random_fn(4, 8)
  fused = features.fuse_feature_fns([a, b], [2.0, 1.0])(frames)[0]
  na = a(frames)[0] / np.linalg.norm(a(frames)[0], axis=-1, keepdims=True)
  nb = b(frames)[0] / np.linalg.norm(b(frames)[0], axis=-1, keepdims=True)
  cos = lambda f: f[0, 0] @ f[1, 1]
  np.testing.assert_allclose(cos(fused), (4 * cos(na) + cos(nb)) / 5,
                             rtol=1e-5)


def test_fusion_rejects_different_grids_and_missing_weights():
  frames = np.zeros((1, 32, 32, 3), np.uint8)
  coarse = lambda x: np.ones((1, 2, 2, 4), np.float32)
  with pytest.raises(ValueError, match="cell grid"):
    features.fuse_feature_fns([_random_fn(0, 4), coarse], [1, 1])(frames)
  with pytest.raises(ValueError, match="one weight each"):
    features.fuse_feature_fns([coarse], [1.0, 2.0])


def _save_tiny_encoder(out_dir):
  model = resnet.make_resnet("resnet18", width=8, strides=(1, 2, 1, 1),
                             padding_mode="zeros", num_stages=3)
  variables = model.init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)),
                         train=False)
  pretrained.save_encoder(out_dir, variables, arch="resnet18", width=8,
                          padding_mode="zeros", kind="test", source="init")


@pytest.mark.slow
def test_fc_trains_then_evaluates_fused_and_evaluates_from_checkpoints(
    tmp_path):
  encoder = str(tmp_path / "semantic")
  _save_tiny_encoder(encoder)
  load = lambda: config_defaults.load(  # pylint: disable=g-long-lambda
      os.path.join(REPO, "configs/sfc.py:smoke,fused"))
  with pytest.raises(ValueError, match="fusion member 'semantic' has no "
                     "checkpoint"):
    run.train_and_evaluate(load(), str(tmp_path / "a"), log=lambda m: None)
  assert not os.path.exists(tmp_path / "a")  # Failed before anything.

  config = load()
  config.evals.synthetic.fusion.semantic.checkpoint = encoder
  out = run.train_and_evaluate(config, str(tmp_path / "b"),
                               log=lambda m: None)
  assert os.path.basename(out["synthetic"]["fused"]["folder"]).startswith(
      "fused_step_4-")

  # Evaluation from checkpoints alone: the trained workdir and the encoder.
  config = load()
  config.evals.synthetic.fusion.fc.checkpoint = str(tmp_path / "b")
  config.evals.synthetic.fusion.semantic.checkpoint = encoder
  only = run.evaluate_workdir(config, str(tmp_path / "c"), log=lambda m: None)
  folder = only["synthetic"]["fused"]["folder"]
  assert os.path.basename(folder).startswith("fused-")
  assert os.path.isfile(os.path.join(folder, "results.json"))
  # Same networks, same protocol: the same J&F as after training.
  assert only["synthetic"]["fused"]["table"] == out["synthetic"]["fused"][
      "table"]
