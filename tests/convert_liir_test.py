"""`python -m corrjax.convert --kind=liir`: LIIR_pytorch MAST checkpoints.

The torch model here transcribes shasha521/LIIR_pytorch@21c7ba5
`models/resnet.py` (`ResNet_hr`, BasicBlock; BatchNorm2d for SyncBN) and
`models/mast_momen.py:18-22` (heads), `models/colorizer_momen.py:79-82`
(queue buffers), at width 4, with random weights, BN statistics, gammas and
position embedding (the reference's zero init would hide them).
"""

import jax
import numpy as np
import pytest

from corrjax import convert
from corrjax import pretrained
from corrjax import torch_pickle
from corrjax.models import liir

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

WIDTH = 4


class BasicBlock(nn.Module):
  """`models/resnet.py:12-44`."""

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = torch.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    residual = x if self.downsample is None else self.downsample(x)
    return torch.relu(out + residual)


class ResNetHR(nn.Module):
  """`models/resnet.py:46-114` (ResNet-18: [2, 2, 2, 2])."""

  def __init__(self, width, pe_size):
    super().__init__()
    self.inplanes = width
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.pos_embed1 = nn.Parameter(torch.zeros(1, width, pe_size, pe_size))
    self.layer1 = self._make_layer(width, 2)
    self.layer2 = self._make_layer(width * 2, 2, stride=2)
    self.layer3 = self._make_layer(width * 4, 2, stride=1)
    self.layer4 = self._make_layer(width * 4, 2, stride=1)

  def _make_layer(self, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
          nn.BatchNorm2d(planes))
    layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    x = x + F.interpolate(self.pos_embed1, size=(x.size(2), x.size(3)),
                          mode="bicubic")
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Colorizer(nn.Module):
  """The buffers of `models/colorizer_momen.py:79-82`."""

  def __init__(self, size, h):
    super().__init__()
    self.register_buffer("feats_queue", torch.randn(size, 8, h, h))
    self.register_buffer("refs_queue", torch.randint(0, 10000, (size,)))
    self.register_buffer("flag", torch.zeros(1) + 5)


class MAST(nn.Module):
  """`models/mast_momen.py:9-33` (the parts a checkpoint holds)."""

  def __init__(self, width=WIDTH, pe_size=16, semantic=True, momentum=True,
               match_dim=6, semantic_dim=8):
    super().__init__()
    self.feature_extraction = ResNetHR(width, pe_size)
    self.post_convolution = nn.Conv2d(4 * width, match_dim, 3, 1, 1)
    if semantic:
      self.conv_semantic = nn.Conv2d(4 * width, semantic_dim, 3, 2, 1)
    if momentum:
      self.conv_semantic_k = nn.Conv2d(4 * width, semantic_dim, 3, 2, 1)
      self.colorizer = Colorizer(12, 4)

  def features(self, x):
    trunk = self.feature_extraction(x)
    out = {"match": self.post_convolution(trunk)}
    if hasattr(self, "conv_semantic"):
      out["semantic"] = self.conv_semantic(trunk)
    if hasattr(self, "conv_semantic_k"):
      out["momentum"] = self.conv_semantic_k(trunk)
    return out


def _random_mast(seed=0, **kwargs):
  torch.manual_seed(seed)
  model = MAST(**kwargs)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("pos_embed1"):
        p.normal_()
      elif ".bn" in name or "downsample.1" in name:
        p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0, .1)
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  return model.eval()


def _save(model, path, zip_format=True):
  torch.save({"epoch": 3, "state_dict": model.state_dict()}, path,
             _use_new_zipfile_serialization=zip_format)


def _liir_model(semantic_dim=8):
  return liir.LIIRNet(width=WIDTH, widths=(4, 8, 16, 16), pe_size=(16, 16),
                      match_dim=6, semantic_dim=semantic_dim)


def _compare(ours, theirs):
  theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
  assert ours.shape == theirs.shape
  diff = np.abs(np.asarray(ours) - theirs).max()
  print(f"max abs diff {diff:.2e} (max |value| {np.abs(theirs).max():.2f})")
  assert diff <= 1e-4 * max(1.0, np.abs(theirs).max()), diff


@pytest.mark.parametrize("zip_format", [True, False])
def test_features_match_torch(tmp_path, zip_format):
  model = _random_mast()
  path = str(tmp_path / "liir.pt")
  _save(model, path, zip_format)
  variables, spec = convert.convert_state_dict(torch_pickle.load(path),
                                               "liir")
  assert spec == dict(arch="liir_resnet18", width=WIDTH, padding_mode="zeros")
  queue = variables["queue"]
  assert queue["feats"].shape == (12, 4, 4, 8)
  np.testing.assert_array_equal(
      queue["ids"], model.colorizer.refs_queue.numpy())
  assert int(queue["flag"]) == 5
  np.testing.assert_array_equal(
      queue["feats"],
      model.colorizer.feats_queue.numpy().transpose(0, 2, 3, 1))

  # 48 x 40 frames: the 16 x 16 embedding is resized to the 24 x 20 stem.
  x = np.random.default_rng(1).normal(size=(2, 48, 40, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = model.features(torch.from_numpy(x).permute(0, 3, 1, 2))
  net = _liir_model()
  ours = jax.jit(net.apply)({"params": variables["params"],
                             "batch_stats": variables["batch_stats"]}, x)
  _compare(ours["match"], theirs["match"])
  _compare(ours["semantic"], theirs["semantic"])
  trunk = ours["trunk"]
  _compare(liir.semantic_head(variables["momentum"]["conv_semantic_k"],
                              trunk), theirs["momentum"])


def test_ape_only_checkpoint_and_the_cli(tmp_path):
  model = _random_mast(seed=2, semantic=False, momentum=False)
  src = str(tmp_path / "APE.pt")
  _save(model, src)
  out = str(tmp_path / "enc")
  notes = convert.run(src, "liir", out)
  assert any("no semantic head" in n for n in notes)
  variables, spec = pretrained.load_encoder(out)
  assert spec["arch"] == "liir_resnet18"
  assert set(variables) == {"params", "batch_stats"}
  assert "conv_semantic" not in variables["params"]
  x = np.random.default_rng(3).normal(size=(1, 32, 32, 3)).astype(np.float32)
  net = _liir_model()
  ours = jax.jit(lambda v, x: net.apply(
      v, x, method=lambda m, x: m.post_convolution(m.trunk(x))))(
          variables, x)
  with torch.no_grad():
    theirs = model.features(torch.from_numpy(x).permute(0, 3, 1, 2))
  _compare(ours, theirs["match"])


def test_not_a_liir_checkpoint():
  with pytest.raises(ValueError, match="not a LIIR_pytorch MAST"):
    convert.convert_state_dict({"conv1.weight": np.zeros((4, 3, 7, 7))},
                               "liir")
  state = {k: v.numpy() for k, v in _random_mast().state_dict().items()}
  del state["feature_extraction.layer2.0.conv1.weight"]
  with pytest.raises(ValueError, match="1 missing"):
    convert.convert_state_dict({"state_dict": state}, "liir")
  with pytest.raises(ValueError, match="no --prefix"):
    convert.convert_state_dict({"state_dict": state}, "liir", prefix="x")
