"""CRW's node encoder: ResNet trunk -> spatial mean -> linear head -> L2.

Reference: ajabri/videowalk@047f3f4 `code/model.py` (`pixels_to_nodes`
83-114, `make_head` 42-51), `code/resnet.py` (`modify` 20-39) and
`code/utils/__init__.py` (`make_encoder` 287-324, `--model-type scratch`).

Parameters: {"encoder": torchvision-named ResNet (see models/resnet.py),
"selfsim_fc": {"linear0", "linear1", ...}}; `selfsim_fc/linear{k}` is the
reference's `selfsim_fc.{2k}` (its odd indices are ReLUs).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from corrjax.models import heads
from corrjax.models import precision
from corrjax.models import resnet
from corrjax.ops import l2norm


class SelfSimHead(nn.Module):
  """`make_head(depth)` (`model.py:42-51`): MLP from C to `out_dim`.

  depth >= 0: depth hidden Linear(C, C) + ReLU layers, then Linear(C, out);
  depth 0 is one Linear (the reference's default, `--head-depth 0`);
  depth < 0 is the identity. PyTorch's default Linear init. Matmuls at
  HIGHEST precision, as PyTorch's float32 Linear on GPU.

  Call: `x` float [..., C]. Returns [..., out_dim] (or [..., C]) in
  `dtype`.
  """
  depth: int = 0
  out_dim: int = 128
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.depth < 0:
      return x
    in_dim = x.shape[-1]
    dims = [in_dim] * (self.depth + 1) + [self.out_dim]
    for k, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
      if k:
        x = nn.relu(x)
      x = nn.Dense(d_out, kernel_init=heads.torch_kernel_init,
                   bias_init=heads.torch_conv_bias_init(d_in),
                   precision=jax.lax.Precision.HIGHEST, dtype=self.dtype,
                   name=f"linear{k}")(x)
    return x


class CRWNet(nn.Module):
  """Patches of a clip -> L2-normalised node embeddings.

  Defaults are the reference's `--model-type scratch`: ResNet-18 with
  reflect padding on every padded conv, stride 1 in layer3 and layer4
  (including their 1x1 downsample convs), layer4 kept (`--remove-layers
  []`), torchvision init (no zero-gamma), 512 -> 128 linear head.

  Attributes:
    arch: ResNet name.
    width: ResNet base width (64).
    strides: per-stage strides ((1, 2, 1, 1): output stride 8, so a 64 px
      patch gives an 8x8 map).
    padding_mode: 'reflect' ('scratch') or 'zeros' ('scratch_zeropad').
    head_depth: `--head-depth` (0: one linear layer).
    embed_dim: node embedding size (128).
    dtype: compute dtype (models/precision.py); outputs are float32.
  """
  arch: str = "resnet18"
  width: int = 64
  strides: Sequence[int] = (1, 2, 1, 1)
  padding_mode: str = "reflect"
  head_depth: int = 0
  embed_dim: int = 128
  dtype: Any = None

  @nn.compact
  def __call__(self, patches: jax.Array,
               train: bool = False) -> dict[str, jax.Array]:
    """Embeds every patch of every frame.

    Args:
      patches: float [B, T, N, P, P, 3] normalised patches; N nodes per
        frame (row-major patch grid), P pixels square.
      train: BatchNorm in training mode (batch statistics over all
        B * T * N patches, as the reference's single encoder call).

    Returns:
      {"nodes": float [B, T, N, D] unit-norm node embeddings,
       "maps": float [B, T, N, h, w, C] the trunk's last feature maps}.
    """
    if patches.ndim != 6 or patches.shape[-1] != 3:
      raise ValueError("patches must be [B, T, N, P, P, 3]; got shape "
                       f"{patches.shape}.")
    lead = patches.shape[:3]
    encoder = resnet.make_resnet(
        self.arch, width=self.width, strides=tuple(self.strides),
        padding_mode=self.padding_mode, zero_init_last_bn=False,
        dtype=self.dtype, name="encoder")
    feats = encoder(patches.reshape(-1, *patches.shape[3:]), train)
    maps = feats[f"stage{len(self.strides)}"]
    maps = precision.to_float32(maps)
    pooled = jnp.mean(maps, axis=(1, 2))  # `model.py:107`.
    nodes = l2norm.l2_normalize(precision.to_float32(SelfSimHead(
        self.head_depth, self.embed_dim, self.dtype,
        name="selfsim_fc")(pooled)))
    return {"nodes": nodes.reshape(*lead, nodes.shape[-1]),
            "maps": maps.reshape(*lead, *maps.shape[1:])}
