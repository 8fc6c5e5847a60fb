"""SFC's fine-grained correspondence network (FC): encoder + dense heads."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from corrjax.models import heads
from corrjax.models import precision
from corrjax.models import resnet


class FineGrainedNet(nn.Module):
  """Online branch of FC (`code/models/fine_grained.py:24-48` in SFC).

  The target branch has the same encoder and projector but no predictor: run
  it with `method=FineGrainedNet.project` on a params tree holding only
  {"encoder", "projector"}.

  Attributes:
    arch: ResNet name.
    width: ResNet base width (64 in the paper).
    strides: per-stage strides ((1, 2, 1, 1): output stride 8).
    padding_mode: conv padding of the encoder.
    zero_init_last_bn: zero gamma on each block's last BN (SFC's init).
    projection_hidden_dim, projection_dim: projector and predictor sizes.
    dtype: compute dtype (models/precision.py); outputs are float32.
  """
  arch: str = "resnet18"
  width: int = 64
  strides: Sequence[int] = (1, 2, 1, 1)
  padding_mode: str = "zeros"
  zero_init_last_bn: bool = True
  projection_hidden_dim: int = 2048
  prediction_hidden_dim: int = 2048
  projection_dim: int = 256
  dtype: Any = None

  def setup(self):
    self.encoder = resnet.make_resnet(
        self.arch, width=self.width, strides=tuple(self.strides),
        padding_mode=self.padding_mode,
        zero_init_last_bn=self.zero_init_last_bn, dtype=self.dtype)
    self.projector = heads.ProjectionHead(self.projection_hidden_dim,
                                          self.projection_dim, self.dtype)
    self.predictor = heads.ProjectionHead(self.prediction_hidden_dim,
                                          self.projection_dim, self.dtype)

  def project(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """x: [B, H, W, 3] -> {"feats": [B, H/8, W/8, C], "proj": [.., D]}."""
    feats = self.encoder(x, train)
    last = feats[f"stage{len(self.strides)}"]
    return precision.to_float32(
        {"feats": last, "proj": self.projector(last, train)})

  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """x: [B, H, W, 3] -> {"feats", "proj", "pred"}; pred: [B, h, w, D]."""
    out = self.project(x, train)
    out["pred"] = precision.to_float32(self.predictor(out["proj"], train))
    return out
