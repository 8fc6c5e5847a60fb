"""Tests for corrjax.models.resnet and heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.models import fine_grained
from corrjax.models import resnet


def _init(model, size=64):
  return model.init(jax.random.key(0), jnp.zeros((2, size, size, 3)),
                    train=False)


@pytest.mark.parametrize("arch,expected", [("resnet18", 11_176_512),
                                           ("resnet50", 23_508_032)])
def test_parameter_counts_match_torchvision_without_fc(arch, expected):
  # torchvision resnet18 has 11,689,512 parameters, 513,000 in fc;
  # resnet50 25,557,032 with 2,049,000 in fc.
  variables = jax.eval_shape(lambda: _init(resnet.make_resnet(arch), 224))
  count = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  assert count == expected


def test_stage_strides_and_channels():
  model = resnet.make_resnet("resnet18", width=8, strides=(1, 2, 1, 1))
  variables = _init(model)
  out = model.apply(variables, jnp.ones((2, 64, 64, 3)))
  shapes = {k: v.shape for k, v in out.items()}
  assert shapes == {"stem": (2, 16, 16, 8), "stage1": (2, 16, 16, 8),
                    "stage2": (2, 8, 8, 16), "stage3": (2, 8, 8, 32),
                    "stage4": (2, 8, 8, 64)}
  default = resnet.make_resnet("resnet18", width=8)
  out = default.apply(_init(default), jnp.ones((2, 64, 64, 3)))
  assert out["stage4"].shape == (2, 2, 2, 64)


def test_odd_sizes_give_ceil_division_grid():
  # DAVIS 480x854 -> 60x107 cells at stride 8: ceil(854 / 8) = 107.
  model = resnet.make_resnet("resnet18", width=4, strides=(1, 2, 1, 1),
                             num_stages=3)
  out = jax.eval_shape(lambda: model.apply(
      _init(model), jnp.zeros((1, 480, 854, 3))))
  assert out["stage3"].shape == (1, 60, 107, 16)


def test_torchvision_names():
  variables = _init(resnet.make_resnet("resnet50", width=4))
  params, stats = variables["params"], variables["batch_stats"]
  assert set(params) == {"conv1", "bn1", "layer1", "layer2", "layer3",
                         "layer4"}
  block = params["layer2"]["block0"]
  assert set(block) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                        "downsample_conv", "downsample_bn"}
  assert block["conv2"]["kernel"].shape == (3, 3, 8, 8)
  assert set(stats["layer1"]["block1"]["bn1"]) == {"mean", "var"}
  assert "downsample_conv" not in params["layer2"]["block1"]


def test_init_follows_reference():
  variables = _init(resnet.make_resnet("resnet18", width=16), 32)
  params = variables["params"]
  for stage in ("layer1", "layer4"):
    for block in params[stage].values():
      np.testing.assert_array_equal(block["bn2"]["scale"], 0.0)
      np.testing.assert_array_equal(block["bn1"]["scale"], 1.0)
  kernel = params["layer4"]["block1"]["conv1"]["kernel"]  # 3x3, 128 out.
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2 / (9 * 128)),
                             rtol=0.05)


def test_reflect_padding_differs_from_zeros_only_at_borders():
  kwargs = dict(width=4, num_stages=1, zero_init_last_bn=False)
  zeros = resnet.make_resnet("resnet18", **kwargs)
  reflect = resnet.make_resnet("resnet18", padding_mode="reflect", **kwargs)
  variables = _init(zeros)
  x = jax.random.normal(jax.random.key(1), (1, 128, 128, 3))
  a = zeros.apply(variables, x)["stage1"]
  b = reflect.apply(variables, x)["stage1"]
  assert not np.allclose(a, b)
  np.testing.assert_allclose(a[:, 8:-8, 8:-8], b[:, 8:-8, 8:-8], atol=1e-5)
  with pytest.raises(ValueError, match="padding_mode"):
    _init(resnet.make_resnet("resnet18", width=4, padding_mode="circular"))


def test_dilation_keeps_resolution():
  model = resnet.make_resnet("resnet18", width=4, strides=(1, 2, 1, 1),
                             dilations=(1, 1, 2, 4))
  out = model.apply(_init(model), jnp.ones((1, 64, 64, 3)))
  assert out["stage4"].shape == (1, 8, 8, 32)


def test_fine_grained_heads_and_target_branch():
  model = fine_grained.FineGrainedNet(
      width=8, projection_hidden_dim=16, prediction_hidden_dim=12,
      projection_dim=6)
  variables = _init(model)
  out = model.apply(variables, jnp.ones((2, 64, 64, 3)))
  assert out["feats"].shape == (2, 8, 8, 64)
  assert out["proj"].shape == out["pred"].shape == (2, 8, 8, 6)
  target = {k: variables[c][k] for c in ("params",) for k in
            ("encoder", "projector")}
  proj = model.apply({"params": target,
                      "batch_stats": variables["batch_stats"]},
                     jnp.ones((2, 64, 64, 3)), method=model.project)["proj"]
  np.testing.assert_allclose(proj, out["proj"], atol=1e-6)


def test_per_stage_widths_and_no_max_pool():
  # LIIR's trunk (LIIR_pytorch `models/resnet.py:59-67`) at width 4.
  model = resnet.make_resnet("resnet18", width=4, widths=(4, 8, 16, 16),
                             strides=(1, 2, 1, 1), use_max_pool=False)
  variables = _init(model)
  out = model.apply(variables, jnp.ones((2, 64, 64, 3)))
  shapes = {k: v.shape for k, v in out.items()}
  assert shapes == {"stem": (2, 32, 32, 4), "stage1": (2, 32, 32, 4),
                    "stage2": (2, 16, 16, 8), "stage3": (2, 16, 16, 16),
                    "stage4": (2, 16, 16, 16)}
  # layer4 keeps layer3's width, so its first block has no downsample.
  assert "downsample_conv" not in variables["params"]["layer4"]["block0"]
  assert resnet.output_channels("resnet18", 4, 4, (4, 8, 16, 16)) == 16
  with pytest.raises(ValueError, match="one entry per stage"):
    _init(resnet.make_resnet("resnet18", width=4, widths=(4, 8)))


def test_stem_hook_runs_before_the_max_pool():
  model = resnet.make_resnet("resnet18", width=4, num_stages=1)
  variables = _init(model)
  x = jax.random.normal(jax.random.key(2), (1, 32, 32, 3))
  seen = {}

  def hook(stem):
    seen["shape"] = stem.shape
    return stem + 1.0

  hooked = model.apply(variables, x, stem_hook=hook)["stem"]
  plain = model.apply(variables, x)["stem"]
  assert seen["shape"] == (1, 16, 16, 4)
  np.testing.assert_allclose(hooked, plain + 1.0, atol=1e-5)
