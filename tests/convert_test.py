"""Tests for corrjax.convert: PyTorch ResNet checkpoints -> encoder dirs.

Each checkpoint layout is made by a small torch ResNet written here with
torchvision's module names, random weights and random BN statistics, saved
with torch.save in both formats; corrjax's features must match torch's in
eval mode at every stage.
"""

import argparse
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from corrjax import convert
from corrjax import pretrained
from corrjax import torch_pickle
from corrjax.evals import features
from corrjax.models import resnet

torch = pytest.importorskip("torch")
nn = torch.nn

WIDTH = 4


class TorchBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride, padding_mode):
    super().__init__()
    conv = lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False,
                                     padding_mode=padding_mode)
    self.conv1, self.bn1 = conv(inplanes, planes, stride), nn.BatchNorm2d(
        planes)
    self.conv2, self.bn2 = conv(planes, planes, 1), nn.BatchNorm2d(planes)

  def forward(self, x):
    out = torch.relu(self.bn1(self.conv1(x)))
    return self.bn2(self.conv2(out))


class TorchBottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride, padding_mode):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False,
                           padding_mode=padding_mode)  # v1.5: stride here.
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)

  def forward(self, x):
    out = torch.relu(self.bn1(self.conv1(x)))
    out = torch.relu(self.bn2(self.conv2(out)))
    return self.bn3(self.conv3(out))


class Residual(nn.Module):
  """A block plus torchvision's optional `downsample` (1x1 conv, BN)."""

  def __init__(self, block_cls, inplanes, planes, stride, padding_mode):
    super().__init__()
    self.block = block_cls(inplanes, planes, stride, padding_mode)
    out = planes * block_cls.expansion
    self.downsample = None
    if stride != 1 or inplanes != out:
      self.downsample = nn.Sequential(
          nn.Conv2d(inplanes, out, 1, stride, bias=False),
          nn.BatchNorm2d(out))

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(self.block(x) + identity)

  def state_dict_items(self):
    """torchvision names: the block's tensors sit at the block's level."""
    items = dict(self.block.state_dict())
    if self.downsample is not None:
      items.update({f"downsample.{k}": v
                    for k, v in self.downsample.state_dict().items()})
    return items


class TorchResNet(nn.Module):
  """torchvision's ResNet layout with `width`, strides and padding mode."""

  def __init__(self, arch, width, strides, padding_mode="zeros",
               num_stages=4):
    super().__init__()
    sizes, block = resnet.STAGE_SIZES[arch]
    block_cls = TorchBottleneck if block is resnet.Bottleneck else (
        TorchBasicBlock)
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False,
                           padding_mode=padding_mode)
    self.bn1 = nn.BatchNorm2d(width)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = width
    self.stages = nn.ModuleList()
    for i in range(num_stages):
      blocks = []
      for j in range(sizes[i]):
        blocks.append(Residual(block_cls, inplanes, width * 2**i,
                               strides[i] if j == 0 else 1, padding_mode))
        inplanes = width * 2**i * block_cls.expansion
      self.stages.append(nn.Sequential(*blocks))
    self.fc = nn.Linear(inplanes, 10)

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    out = {}
    for i, stage in enumerate(self.stages):
      x = stage(x)
      out[f"stage{i + 1}"] = x
    return out

  def torchvision_state_dict(self):
    """The state dict torchvision's ResNet would have (fc included)."""
    sd = {f"conv1.{k}": v for k, v in self.conv1.state_dict().items()}
    sd.update({f"bn1.{k}": v for k, v in self.bn1.state_dict().items()})
    for i, stage in enumerate(self.stages):
      for j, res in enumerate(stage):
        sd.update({f"layer{i + 1}.{j}.{k}": v
                   for k, v in res.state_dict_items().items()})
    sd.update({f"fc.{k}": v for k, v in self.fc.state_dict().items()})
    return sd


def _random_torch_resnet(arch, strides, padding_mode="zeros", num_stages=4,
                         seed=0):
  torch.manual_seed(seed)
  model = TorchResNet(arch, WIDTH, strides, padding_mode, num_stages)
  for m in model.modules():
    if isinstance(m, nn.Conv2d):
      fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
      nn.init.normal_(m.weight, std=(2.0 / fan)**0.5)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.uniform_(m.weight, 0.5, 1.5)
      nn.init.normal_(m.bias, std=0.2)
      m.running_mean.normal_(std=0.3)
      m.running_var.uniform_(0.5, 2.0)
      m.num_batches_tracked.fill_(123)
  return model.eval()


def _prefixed(sd, prefix):
  return {prefix + k: v for k, v in sd.items()}


def _optimizer_state(sd):
  return {"state": {i: {"momentum_buffer": torch.randn_like(v.float())}
                    for i, v in enumerate(list(sd.values())[:3])},
          "param_groups": [{"lr": 0.03, "params": [0, 1, 2]}]}


def _torchvision_ckpt(model):
  return model.torchvision_state_dict()


def _moco_ckpt(model):
  sd = model.torchvision_state_dict()
  query = {k: v for k, v in sd.items() if not k.startswith("fc.")}
  query.update({"fc.0.weight": torch.randn(8, 4), "fc.0.bias": torch.zeros(8),
                "fc.2.weight": torch.randn(3, 8), "fc.2.bias": torch.zeros(3)})
  key = {k: torch.randn_like(v.float()) for k, v in query.items()}
  state = {**_prefixed(query, "module.encoder_q."),
           **_prefixed(key, "module.encoder_k."),
           "module.queue": torch.randn(3, 16),
           "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
  return {"epoch": 200, "arch": "resnet50", "state_dict": state,
          "optimizer": _optimizer_state(query)}


def _sfc_fc_ckpt(model):
  trunk = {k: v for k, v in model.torchvision_state_dict().items()
           if not k.startswith("fc.")}  # head_type='early_return'.
  target = {k: v + 1 for k, v in trunk.items()}
  heads = {"online_projector.linear1.weight": torch.randn(16, 32, 1, 1),
           "online_projector.bn1.running_mean": torch.zeros(16),
           "predictor.linear2.bias": torch.zeros(8)}
  return {"model": {**_prefixed(trunk, "online_encoder."),
                    **_prefixed(target, "target_encoder."), **heads},
          "optimizer": _optimizer_state(trunk), "epoch": 20}


def _crw_ckpt(model, pad_conv_names):
  trunk = {k: v for k, v in model.torchvision_state_dict().items()
           if not k.startswith("fc.")}  # modify() removed fc and avgpool.
  if pad_conv_names:  # The `conv1.1.weight` naming VW test.py:38-44 fixes.
    trunk = {k[:-len("weight")] + "1.weight"
             if k.endswith(("conv1.weight", "conv2.weight")) else k: v
             for k, v in trunk.items()}
  state = {**_prefixed(trunk, "encoder.model."),
           "selfsim_fc.0.weight": torch.randn(128, 32),
           "selfsim_fc.0.bias": torch.zeros(128)}
  args = argparse.Namespace(model_type="scratch", temp=0.05, lr=1e-4)
  return {"model": state, "optimizer": _optimizer_state(trunk),
          "lr_scheduler": {"milestones": {}, "last_epoch": 5},
          "epoch": 5, "args": args}


def _plain_ckpt(model):
  sd = model.torchvision_state_dict()
  return {"state_dict": _prefixed(sd, "backbone."), "step": 10}


# kind -> (arch, strides, padding, num_stages, checkpoint fn, extra args).
CASES = {
    "torchvision": ("resnet18", (1, 2, 2, 2), "zeros", 4, _torchvision_ckpt,
                    {}),
    "moco": ("resnet50", (1, 2, 1, 1), "zeros", 4, _moco_ckpt, {}),
    "sfc_fc": ("resnet18", (1, 2, 1, 1), "zeros", 4, _sfc_fc_ckpt, {}),
    "crw": ("resnet18", (1, 2, 1, 1), "reflect", 4,
            lambda m: _crw_ckpt(m, pad_conv_names=True), {}),
    "plain": ("resnet18", (1, 2, 1, 1), "zeros", 3, _plain_ckpt,
              {"prefix": "state_dict.backbone"}),
}


def _input(seed=1, h=36, w=44):
  return np.random.default_rng(seed).normal(size=(2, h, w, 3)).astype(
      np.float32)


def _torch_features(model, x):
  with torch.no_grad():
    out = model(torch.from_numpy(x).permute(0, 3, 1, 2))
  return {k: v.permute(0, 2, 3, 1).numpy() for k, v in out.items()}


def _assert_close(ours, theirs, name):
  err = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
  assert err <= 1e-4, f"{name}: max relative error {err:.2e}"


@pytest.mark.parametrize("kind", CASES)
def test_features_match_torch_for_both_formats(tmp_path, kind):
  arch, strides, padding, num_stages, make_ckpt, extra = CASES[kind]
  model = _random_torch_resnet(arch, strides, padding, num_stages)
  ckpt = make_ckpt(model)
  results = []
  for zip_format in (True, False):
    path = str(tmp_path / f"{kind}_{zip_format}.pth")
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    checkpoint = torch_pickle.load(path)
    results.append(convert.convert_state_dict(checkpoint, kind, **extra))
  (variables, spec), (legacy_variables, legacy_spec) = results
  assert spec == legacy_spec == dict(arch=arch, width=WIDTH,
                                     padding_mode=padding)
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables,
                         legacy_variables)
  assert ("layer4" in variables["params"]) == (num_stages == 4)

  x = _input()
  model_jax = resnet.make_resnet(arch, width=WIDTH, strides=strides,
                                padding_mode=spec["padding_mode"],
                                num_stages=num_stages)
  ours = jax.jit(model_jax.apply)(variables, x)
  theirs = _torch_features(model, x)
  assert sorted(theirs) == [f"stage{i + 1}" for i in range(num_stages)]
  for name, expected in theirs.items():
    assert ours[name].shape == expected.shape, name
    _assert_close(np.asarray(ours[name]), expected, name)


def test_crw_accepts_plain_conv_names():
  model = _random_torch_resnet("resnet18", (1, 2, 1, 1), "reflect")
  renamed = convert.convert_state_dict(
      _numpy(_crw_ckpt(model, pad_conv_names=True)), "crw")[0]
  plain = convert.convert_state_dict(
      _numpy(_crw_ckpt(model, pad_conv_names=False)), "crw")[0]
  jax.tree_util.tree_map(np.testing.assert_array_equal, renamed, plain)


def _numpy(tree):
  if isinstance(tree, dict):
    return {k: _numpy(v) for k, v in tree.items()}
  return tree.numpy() if isinstance(tree, torch.Tensor) else tree


def _tv_state(arch="resnet18"):
  model = _random_torch_resnet(arch, (1, 2, 2, 2))
  return _numpy(model.torchvision_state_dict())


def test_infers_arch_and_width():
  for arch in ("resnet18", "resnet34", "resnet50"):
    _, spec = convert.convert_state_dict(_tv_state(arch), "torchvision")
    assert spec == dict(arch=arch, width=WIDTH, padding_mode="zeros")


def test_unknown_kind():
  with pytest.raises(ValueError, match="unknown kind 'simclr'.*moco"):
    convert.convert_state_dict(_tv_state(), "simclr")


def test_missing_unexpected_and_misshapen_tensors_are_listed():
  sd = _tv_state()
  del sd["layer2.1.bn1.running_var"]
  sd["layer1.0.extra.weight"] = np.zeros(3, np.float32)
  sd["layer3.0.conv2.weight"] = sd["layer3.0.conv2.weight"][:, :, :1]
  with pytest.raises(ValueError) as e:
    convert.convert_state_dict(sd, "torchvision")
  message = str(e.value)
  assert "resnet18 (width 4, 4 stages)" in message
  assert "1 missing (layer2.1.bn1.running_var)" in message
  assert "1 unexpected (layer1.0.extra.weight)" in message
  assert "1 with the wrong shape (layer3.0.conv2.weight [16, 16, 1, 3]" in (
      message)
  assert "Nothing was converted" in message


def test_partial_layer4_is_an_error():
  sd = {k: v for k, v in _tv_state().items() if not k.startswith("layer4.1")}
  with pytest.raises(ValueError, match=r"10 missing \(layer4\.1\.bn1\.bias"):
    convert.convert_state_dict(sd, "torchvision")


def test_wrong_kind_suggests_prefix():
  ckpt = {"model": _prefixed(_tv_state(), "online_encoder.")}
  with pytest.raises(ValueError, match=r"no ResNet stem \('conv1\.weight'\) "
                     r"under prefix 'state_dict\.module\.encoder_q\.' \(kind "
                     r"'moco'\); a "
                     r"ResNet trunk is under 'model\.online_encoder\.'; use "
                     r"the kind for that layout or --kind=plain "
                     r"--prefix=model\.online_encoder\.$"):
    convert.convert_state_dict(ckpt, "moco")
  data_parallel = _prefixed(_tv_state(), "module.")
  with pytest.raises(ValueError, match=r"under prefix '' \(kind 'torchvision'"
                     r"\); a ResNet trunk is under 'module\.'.*--prefix="
                     r"module\.$"):
    convert.convert_state_dict(data_parallel, "torchvision")


def test_prefix_only_for_plain_and_unsupported_arch():
  with pytest.raises(ValueError, match="only for --kind=plain"):
    convert.convert_state_dict(_tv_state(), "moco", prefix="x")
  sd = _tv_state("resnet50")
  sd["layer3.6.conv1.weight"] = sd["layer3.5.conv1.weight"]  # ResNet-101?
  with pytest.raises(ValueError, match=r"blocks per stage \(3, 4, 7, 3\) "
                     "with bottleneck blocks exceed"):
    convert.convert_state_dict(sd, "torchvision")


def _run_cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "corrjax.convert", *args], capture_output=True,
      text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_cli_writes_an_encoder_for_feature_extraction(tmp_path):
  model = _random_torch_resnet("resnet18", (1, 2, 1, 1), "reflect", seed=3)
  src = str(tmp_path / "pretrained.pth")
  torch.save(_crw_ckpt(model, pad_conv_names=True), src,
             _use_new_zipfile_serialization=False)
  out = str(tmp_path / "crw")
  result = _run_cli(f"--from={src}", "--kind=crw", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert "resnet18, width 4, 4 stages, padding reflect" in result.stdout
  assert "ignored" in result.stdout and "selfsim_fc" in result.stdout
  assert "dropped 20 BN num_batches_tracked counters" in result.stdout

  variables, spec = pretrained.load_encoder(out)
  assert spec == dict(arch="resnet18", width=WIDTH, padding_mode="reflect")
  frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3),
                                             dtype=np.uint8)
  feature_fn = features.frame_features(features.trunk_encoder(**spec),
                                       variables, batch_size=2)
  ours = feature_fn(frames)
  # Reference: VW test.py normalises with ImageNet statistics, reads layer3
  # and L2-normalises over channels.
  mean = np.array([0.485, 0.456, 0.406], np.float32)
  std = np.array([0.229, 0.224, 0.225], np.float32)
  x = ((frames / np.float32(255) - mean) / std).astype(np.float32)
  layer3 = _torch_features(model, x)["stage3"]
  expected = layer3 / np.linalg.norm(layer3, axis=-1, keepdims=True)
  assert ours.shape == (3, 5, 6, 16)
  _assert_close(ours, expected, "features")



def test_cli_errors_are_one_line(tmp_path):
  missing = str(tmp_path / "nope.pth")
  result = _run_cli(f"--from={missing}", "--kind=torchvision",
                    f"--out={tmp_path / 'o'}")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"corrjax: error: checkpoint {missing!r} not found."]


def test_run_refuses_unknown_kind_and_existing_output(tmp_path):
  src = str(tmp_path / "x.pth")
  torch.save({"w": torch.ones(1)}, src)
  with pytest.raises(ValueError, match="unknown kind 'resnet'"):
    convert.run(src, "resnet", str(tmp_path / "o"))
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "f").write_text("x")
  with pytest.raises(FileExistsError, match="not empty"):
    convert.run(src, "torchvision", str(tmp_path / "full"))
  for prefix in (None, "model"):
    with pytest.raises(ValueError, match="no ResNet stem .* the file holds "
                       r"1 tensors, e\.g\. w\.$"):
      convert.run(src, "plain", str(tmp_path / "o"), prefix=prefix)
