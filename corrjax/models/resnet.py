"""Functional Flax ResNets (18/34/50) with per-stage stride and dilation.

Layout is NHWC. Parameter names follow torchvision one-to-one, so that weight
conversion is a renaming plus a transpose:

  torchvision                         corrjax (params / batch_stats)
  conv1.weight [O, I, kh, kw]         conv1/kernel [kh, kw, I, O]
  bn1.weight, bn1.bias                bn1/scale, bn1/bias
  bn1.running_mean, running_var       batch_stats bn1/mean, bn1/var
  layer2.0.conv1.weight               layer2/block0/conv1/kernel
  layer2.0.downsample.0.weight        layer2/block0/downsample_conv/kernel
  layer2.0.downsample.1.*             layer2/block0/downsample_bn/*

Padding is explicit and equal to PyTorch's (k // 2 * dilation per side, max
pool padding 1 with -inf), never 'SAME', whose asymmetric padding at stride 2
would shift every feature by half a pixel relative to the reference.

Initialisation follows SFC `code/models/resnet.py:198-215` (and torchvision):
convs N(0, sqrt(2 / (k * k * C_out))), BN gamma 1 and beta 0, and optionally
zero gamma on the last BN of every residual block.
"""

from collections.abc import Callable, Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# He-normal with fan_out: std = sqrt(2 / (kh * kw * C_out)).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch BatchNorm2d: momentum 0.1 on the new value, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _conv(x: jax.Array, features: int, kernel: int, stride: int = 1,
          dilation: int = 1, padding_mode: str = "zeros", *,
          name: str, dtype: Any = None) -> jax.Array:
  """A bias-free conv with PyTorch padding; must run inside a compact method.

  Args:
    x: float [B, H, W, C_in].
    features: C_out.
    kernel: square kernel size.
    stride: spatial stride.
    dilation: kernel dilation.
    padding_mode: 'zeros' or 'reflect' (CRW's `--model-type scratch`).
    name: submodule name (torchvision's, e.g. 'conv1').
    dtype: compute dtype (None: that of x and the kernel; the kernel is
      stored in float32).

  Returns:
    [B, H', W', C_out] in `dtype`.
  """
  pad = (kernel // 2) * dilation
  if padding_mode not in ("zeros", "reflect"):
    raise ValueError(f"Unknown padding_mode {padding_mode!r}; "
                     "expected 'zeros' or 'reflect'.")
  if pad and padding_mode == "reflect":
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    pad = 0
  return nn.Conv(
      features, (kernel, kernel), strides=(stride, stride),
      kernel_dilation=(dilation, dilation), padding=[(pad, pad), (pad, pad)],
      use_bias=False, kernel_init=conv_init, dtype=dtype,
      param_dtype=jnp.float32, name=name)(x)


def _batch_norm(train: bool, name: str, zero_init: bool = False,
                dtype: Any = None) -> nn.Module:
  """PyTorch's BatchNorm2d; statistics and scale/bias stay float32 (Flax
  reduces in float32), the output is in `dtype`."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON, dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Output channels = `planes`."""
  planes: int
  stride: int = 1
  dilation: int = 1
  padding_mode: str = "zeros"
  zero_init_last_bn: bool = True
  dtype: Any = None
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(_conv, padding_mode=self.padding_mode,
                             dtype=self.dtype)
    bn = functools.partial(_batch_norm, dtype=self.dtype)
    out = conv(x, self.planes, 3, self.stride, self.dilation, name="conv1")
    out = nn.relu(bn(train, "bn1")(out))
    out = conv(out, self.planes, 3, 1, self.dilation, name="conv2")
    out = bn(train, "bn2", self.zero_init_last_bn)(out)
    return nn.relu(out + _shortcut(x, self.planes, self.stride, train,
                                   self.dtype))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (ResNet-50). Output channels = 4 * `planes`."""
  planes: int
  stride: int = 1
  dilation: int = 1
  padding_mode: str = "zeros"
  zero_init_last_bn: bool = True
  dtype: Any = None
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(_conv, padding_mode=self.padding_mode,
                             dtype=self.dtype)
    bn = functools.partial(_batch_norm, dtype=self.dtype)
    out = conv(x, self.planes, 1, name="conv1")
    out = nn.relu(bn(train, "bn1")(out))
    # torchvision v1.5: the stride sits on the 3x3 conv.
    out = conv(out, self.planes, 3, self.stride, self.dilation, name="conv2")
    out = nn.relu(bn(train, "bn2")(out))
    out = conv(out, self.planes * 4, 1, name="conv3")
    out = bn(train, "bn3", self.zero_init_last_bn)(out)
    return nn.relu(out + _shortcut(x, self.planes * 4, self.stride, train,
                                   self.dtype))


def _shortcut(x: jax.Array, features: int, stride: int, train: bool,
              dtype: Any = None) -> jax.Array:
  """Identity, or torchvision's `downsample` (1x1 conv + BN) when needed."""
  if stride == 1 and x.shape[-1] == features:
    return x
  # Called from inside a block's compact __call__, so these submodules
  # attach to that block (names downsample_conv / downsample_bn).
  y = _conv(x, features, 1, stride, name="downsample_conv", dtype=dtype)
  return _batch_norm(train, "downsample_bn", dtype=dtype)(y)


class Stage(nn.Module):
  """torchvision's `layerN`: blocks named block0, block1, ..."""
  num_blocks: int
  block_cls: Any
  planes: int
  stride: int
  first_dilation: int
  dilation: int
  padding_mode: str
  zero_init_last_bn: bool
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for j in range(self.num_blocks):
      x = self.block_cls(
          planes=self.planes, stride=self.stride if j == 0 else 1,
          dilation=self.first_dilation if j == 0 else self.dilation,
          padding_mode=self.padding_mode,
          zero_init_last_bn=self.zero_init_last_bn, dtype=self.dtype,
          name=f"block{j}")(x, train)
    return x


class ResNet(nn.Module):
  """ResNet trunk returning a dict of stage features.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block_cls: BasicBlock or Bottleneck.
    width: channels of the stem and of stage 1's `planes` (64 in the papers).
    widths: optional `planes` of each stage; default width * 2**i. LIIR's
      ResNet-18 uses (64, 128, 256, 256) (LIIR_pytorch
      `models/resnet.py:64-67`: layer4 as wide as layer3).
    strides: stride of each stage (torchvision: 1, 2, 2, 2; SFC FC and CRW
      remove the strides of layer3 and layer4: 1, 2, 1, 1 -> output stride 8).
    dilations: dilation of each stage. As in torchvision's
      `replace_stride_with_dilation`, the first block of a stage uses the
      previous stage's dilation and the remaining blocks use the stage's own.
    num_stages: how many stages to run (3 drops layer4, as the label
      propagation protocol does).
    padding_mode: 'zeros' or 'reflect'.
    zero_init_last_bn: zero gamma on each block's last BN.
    use_max_pool: the stem's 3x3 stride-2 max pool (LIIR removes it:
      LIIR_pytorch `models/resnet.py:59-64,102-109`).
    dtype: compute dtype of convs and BN outputs (models/precision.py);
      parameters and BN statistics are float32.

  Call: `x` float [B, H, W, 3] (normalised image), `train` bool, and an
  optional `stem_hook` applied to the stem's conv1 -> BN -> ReLU output
  [B, ceil(H/2), ceil(W/2), width] before the max pool (LIIR adds its
  position embedding there). Returns {"stem": [B, H/4, W/4, width] (H/2
  without the max pool), "stage1": ..., "stage<num_stages>": ...}, in
  `dtype`.
  """
  stage_sizes: Sequence[int]
  block_cls: Any = BasicBlock
  width: int = 64
  strides: Sequence[int] = (1, 2, 2, 2)
  dilations: Sequence[int] = (1, 1, 1, 1)
  num_stages: int = 4
  padding_mode: str = "zeros"
  zero_init_last_bn: bool = True
  widths: Sequence[int] | None = None
  use_max_pool: bool = True
  dtype: Any = None

  def stage_widths(self) -> tuple[int, ...]:
    """`planes` of each stage."""
    if self.widths is None:
      return tuple(self.width * 2**i for i in range(len(self.stage_sizes)))
    if len(self.widths) != len(self.stage_sizes):
      raise ValueError(f"widths={tuple(self.widths)} needs one entry per "
                       f"stage ({len(self.stage_sizes)}).")
    return tuple(self.widths)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               stem_hook: Callable[[jax.Array], jax.Array] | None = None
               ) -> dict[str, jax.Array]:
    if not 1 <= self.num_stages <= len(self.stage_sizes):
      raise ValueError(f"num_stages={self.num_stages} must be in "
                       f"[1, {len(self.stage_sizes)}].")
    widths = self.stage_widths()
    x = _conv(x, self.width, 7, 2, padding_mode=self.padding_mode,
              name="conv1", dtype=self.dtype)
    x = nn.relu(_batch_norm(train, "bn1", dtype=self.dtype)(x))
    if stem_hook is not None:
      x = stem_hook(x)
    if self.use_max_pool:
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)),
                  constant_values=-jnp.inf)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
    feats = {"stem": x}
    previous_dilation = 1
    for i in range(self.num_stages):
      x = Stage(
          num_blocks=self.stage_sizes[i], block_cls=self.block_cls,
          planes=widths[i], stride=self.strides[i],
          first_dilation=previous_dilation, dilation=self.dilations[i],
          padding_mode=self.padding_mode,
          zero_init_last_bn=self.zero_init_last_bn, dtype=self.dtype,
          name=f"layer{i + 1}")(x, train)
      previous_dilation = self.dilations[i]
      feats[f"stage{i + 1}"] = x
    return feats


STAGE_SIZES = {
    # One block per stage: the smoke configs' trunk (half ResNet-18's
    # compile time in tests); the same names and layout otherwise.
    "resnet10": ((1, 1, 1, 1), BasicBlock),
    "resnet18": ((2, 2, 2, 2), BasicBlock),
    "resnet34": ((3, 4, 6, 3), BasicBlock),
    "resnet50": ((3, 4, 6, 3), Bottleneck),
}


def make_resnet(arch: str, **kwargs) -> ResNet:
  """Builds `arch` in {'resnet10', 'resnet18', 'resnet34', 'resnet50'}."""
  if arch not in STAGE_SIZES:
    raise ValueError(f"Unknown arch {arch!r}; choose from "
                     f"{sorted(STAGE_SIZES)}.")
  stage_sizes, block_cls = STAGE_SIZES[arch]
  return ResNet(stage_sizes=stage_sizes, block_cls=block_cls, **kwargs)


def output_channels(arch: str, width: int, num_stages: int,
                    widths: Sequence[int] | None = None) -> int:
  """Channels of the last stage's output."""
  _, block_cls = STAGE_SIZES[arch]
  planes = (width * 2**(num_stages - 1) if widths is None
            else widths[num_stages - 1])
  return planes * block_cls.expansion
