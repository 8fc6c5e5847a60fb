"""The method/evaluation seam: a method defined only here is evaluated
with no edit to the evaluator; results of each protocol in their own
folder; video selection."""

import json
import os
import types

import jax.numpy as jnp
import numpy as np
import pytest

from corrjax import config_defaults as cd
from corrjax import methods
from corrjax import run
from corrjax.evals import benchmarks
from corrjax.evals import features


def _lab_cells(frames, scale):
  """Toy features: Lab colour (approximate) of 4x4 cells, position-free."""
  x = frames.astype(jnp.float32) / 255.0
  b, h, w, _ = x.shape
  x = x.reshape(b, h // 4, 4, w // 4, 4, 3).mean((2, 4))
  r, g, bl = x[..., 0], x[..., 1], x[..., 2]
  lightness = 0.3 * r + 0.6 * g + 0.1 * bl
  lab = jnp.stack([lightness, r - g, (r + g) / 2 - bl], -1) * scale + 0.1
  return lab / jnp.linalg.norm(lab, axis=-1, keepdims=True)


def _toy_method(predictor_calls=None, settings=False):
  """A method module as a namespace: only the evaluation seam (with
  `settings`, its predictor declares `config.toy_rounds` as a setting)."""
  toy = types.SimpleNamespace(
      encoder=lambda config: features.Encoder(
          apply=lambda variables, frames: _lab_cells(frames,
                                                     variables["scale"]),
          stride=4),
      encoder_variables=lambda tree: {"scale": tree["params"]["scale"]})
  if predictor_calls is not None:
    def mask_predictor(config, tree):
      def predict(frames, first_mask, protocol):
        predictor_calls.append(protocol)
        return np.repeat(first_mask[None], len(frames), 0)  # Copy frame 0.
      return predict
    toy.mask_predictor = mask_predictor
  if settings:
    toy.predictor_settings = lambda config: {"rounds": config.toy_rounds}
  return toy


def _config(**bench):
  c = cd.base(method="toy", total_steps=0)
  bench = dict(dict(source="synthetic", context=2, topk=3), **bench)
  c.evals = cd.evals(synthetic=cd.vos_eval(
      synthetic=cd.synthetic_videos(seed=2, num_videos=2, num_frames=4,
                                    size=32), **bench))
  return c


@pytest.fixture
def toy(monkeypatch):
  def register(method):
    monkeypatch.setitem(methods.METHODS, "toy", method)
  return register


def test_a_new_method_needs_no_evaluator_code(toy, tmp_path):
  toy(_toy_method())
  tree = {"params": {"scale": np.float32(1.0)}, "step": np.int32(7)}
  out = run.evaluate(_config(), tree, 7, str(tmp_path), log=lambda m: None)
  scored = out["synthetic"]["trained"]
  assert 0.0 <= scored["table"]["J&F"] <= 1.0
  folder = scored["folder"]
  assert os.path.basename(folder).startswith("step_7-")
  assert os.path.isfile(os.path.join(folder, "global_results-val.csv"))
  names = sorted(os.listdir(os.path.join(folder, "overlays")))
  assert names == ["synth_100000.png", "synth_100001.png"]
  assert len(os.listdir(os.path.join(folder, "synth_100000"))) == 4
  latest = os.path.join(tmp_path, "eval", "synthetic", "latest")
  assert os.path.realpath(latest) == os.path.realpath(folder)
  # TensorBoard got the metrics too.
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))


def test_a_mask_predictor_replaces_label_propagation(toy, tmp_path):
  calls = []
  toy(_toy_method(calls))
  tree = {"params": {"scale": np.float32(1.0)}}
  out = run.evaluate(_config(), tree, 3, str(tmp_path), log=lambda m: None)
  assert len(calls) == 1 + 2  # The fingerprint, then each video.
  assert calls[-1].topk == 3
  # Copying frame 0's mask: J of frame 0 is perfect, later frames are not.
  assert 0.0 < out["synthetic"]["trained"]["table"]["J"] < 1.0


def test_another_protocol_never_overwrites_earlier_results(toy, tmp_path):
  toy(_toy_method())
  tree = {"params": {"scale": np.float32(1.0)}}
  first = run.evaluate(_config(), tree, 3, str(tmp_path), log=lambda m: None)
  second = run.evaluate(_config(topk=1), tree, 3, str(tmp_path),
                        log=lambda m: None)
  a = first["synthetic"]["trained"]["folder"]
  b = second["synthetic"]["trained"]["folder"]
  assert a != b and os.path.isdir(a) and os.path.isdir(b)
  with open(os.path.join(a, "protocol.json")) as f:
    assert json.load(f)["topk"] == 3
  with open(os.path.join(b, "protocol.json")) as f:
    assert json.load(f)["topk"] == 1
  latest = os.path.join(tmp_path, "eval", "synthetic", "latest")
  assert os.path.realpath(latest) == os.path.realpath(b)


def test_predictor_settings_get_their_own_folder(toy, tmp_path):
  """Mask-VOS's R = 0 and R = 2 are one protocol: the predictor's settings
  name the folder too, so neither reads back (nor overwrites) the other's
  videos, even when their first frames agree (the toy copies frame 0
  whatever R is, so the resume fingerprints agree)."""
  calls = []
  toy(_toy_method(calls, settings=True))
  tree = {"params": {"scale": np.float32(1.0)}}
  folders = []
  for rounds in (2, 0, 2):
    config = _config()
    config.toy_rounds = rounds
    calls.clear()
    out = run.evaluate(config, tree, 3, str(tmp_path), log=lambda m: None)
    folders.append(out["synthetic"]["trained"]["folder"])
    with open(os.path.join(folders[-1], "protocol.json")) as f:
      assert json.load(f)["predictor_settings"] == {"rounds": rounds}
    # The fingerprint, then each video; the third run reads R = 2 back.
    assert len(calls) == (1 + 2 if len(folders) < 3 else 1)
  assert folders[0] != folders[1] and folders[0] == folders[2]


def test_video_selection(tmp_path):
  names = ["a", "b", "c"]
  assert benchmarks.select(names, "") == names
  assert benchmarks.select(names, "2") == ["a", "b"]
  assert benchmarks.select(names, "c,a") == ["c", "a"]
  listing = tmp_path / "list.txt"
  listing.write_text("b\nc\n")
  assert benchmarks.select(names, str(listing)) == ["b", "c"]
  with pytest.raises(ValueError, match="unknown videos"):
    benchmarks.select(names, "a,zz")
  with pytest.raises(FileNotFoundError):
    benchmarks.select(names, str(tmp_path / "missing.txt"))
