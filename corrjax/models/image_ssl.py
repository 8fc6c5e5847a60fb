"""Image-level self-supervised network: ResNet trunk, global pool, MLP heads.

The semantic branch of SFC is an image-level MoCo or BYOL ResNet. Its
encoder is `models/resnet.py` (torchvision parameter names, standard
strides), so label propagation reads its layer3 exactly as for FC.

  MoCo v2 (facebookresearch/moco `moco/builder.py:31-41`): torchvision's
    `fc` replaced by Linear(C, C) - ReLU - Linear(C, 128), both with bias;
    projection_bn=False, no predictor.
  BYOL (deepmind-research `byol/utils/networks.py:25-45`): projector and
    predictor Linear(., 4096, bias) - BN - ReLU - Linear(4096, 256, no bias);
    projection_bn=True, projection_out_bias=False.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from corrjax.models import heads
from corrjax.models import precision
from corrjax.models import resnet


class MLPHead(nn.Module):
  """Linear -> [BN] -> ReLU -> Linear on pooled features.

  Initialised as torch.nn.Linear (U(+-1/sqrt(fan_in)) weights and biases),
  as torchvision's `fc` is. Names: linear1, bn1, linear2.

  Call: `x` float [B, C], `train` bool. Returns [B, out_dim] in `dtype`.
  """
  hidden_dim: int
  out_dim: int
  batch_norm: bool = False
  out_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Dense(self.hidden_dim, kernel_init=heads.torch_kernel_init,
                 bias_init=heads.torch_conv_bias_init(x.shape[-1]),
                 dtype=self.dtype, name="linear1")(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train,
                       momentum=resnet.BN_MOMENTUM,
                       epsilon=resnet.BN_EPSILON, dtype=self.dtype,
                       name="bn1")(x)
    x = nn.relu(x)
    return nn.Dense(self.out_dim, use_bias=self.out_bias,
                    kernel_init=heads.torch_kernel_init,
                    bias_init=heads.torch_conv_bias_init(self.hidden_dim),
                    dtype=self.dtype, name="linear2")(x)


class ImageSSLNet(nn.Module):
  """Online (query) network of MoCo or BYOL: params {encoder, projector
  [, predictor]}.

  The target (momentum key) network has the encoder and projector only: run
  it with `method=ImageSSLNet.project` on a params tree {encoder, projector}.

  Attributes:
    arch, width: ResNet name and base width (64).
    strides: per-stage strides ((1, 2, 2, 2): torchvision, output stride 32).
    padding_mode: conv padding of the encoder.
    zero_init_last_bn: zero gamma on each block's last BN (False for MoCo,
      as torchvision's default; True for BYOL, as haiku's ResNet).
    projection_hidden_dim, projection_dim: projector sizes.
    projection_bn: BN after the projector's hidden layer.
    projection_out_bias: bias on the heads' last layer.
    prediction_hidden_dim: predictor hidden size; 0 builds no predictor.
    dtype: compute dtype (models/precision.py); outputs are float32.
  """
  arch: str = "resnet50"
  width: int = 64
  strides: Sequence[int] = (1, 2, 2, 2)
  padding_mode: str = "zeros"
  zero_init_last_bn: bool = False
  projection_hidden_dim: int = 2048
  projection_dim: int = 128
  projection_bn: bool = False
  projection_out_bias: bool = True
  prediction_hidden_dim: int = 0
  dtype: Any = None

  def setup(self):
    self.encoder = resnet.make_resnet(
        self.arch, width=self.width, strides=tuple(self.strides),
        padding_mode=self.padding_mode,
        zero_init_last_bn=self.zero_init_last_bn, dtype=self.dtype)
    self.projector = MLPHead(self.projection_hidden_dim, self.projection_dim,
                             self.projection_bn, self.projection_out_bias,
                             self.dtype)
    if self.prediction_hidden_dim:
      self.predictor = MLPHead(self.prediction_hidden_dim,
                               self.projection_dim, self.projection_bn,
                               self.projection_out_bias, self.dtype)

  def project(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """x: float [B, H, W, 3] normalised images -> {"embedding": [B, C]
    (global average of the last stage), "proj": [B, projection_dim]}."""
    feats = self.encoder(x, train)[f"stage{len(self.strides)}"]
    embedding = jnp.mean(precision.to_float32(feats), axis=(1, 2))
    return precision.to_float32(
        {"embedding": embedding, "proj": self.projector(embedding, train)})

  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """`project`, plus "pred": [B, projection_dim] if there is a predictor."""
    out = self.project(x, train)
    if self.prediction_hidden_dim:
      out["pred"] = precision.to_float32(self.predictor(out["proj"], train))
    return out
