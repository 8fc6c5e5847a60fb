"""LIIR's network: stride-4 ResNet-18 with a learnable position embedding.

Reference: shasha521/LIIR_pytorch@21c7ba5 (unofficial; the official repo
has no code). `models/resnet.py` (`ResNet_hr` 46-117) and
`models/mast_momen.py` (`MAST` 9-134).

Trunk (`resnet.py:59-67`): 7x7 stride-2 stem, no max pool, layer strides
(1, 2, 1, 1), widths (64, 128, 256, 256), zero gamma on each block's last BN
(`:77-84`), He fan-out conv init (`:69-75`): 256 channels at stride 4.
Position embedding (`:63,106-108`): `pos_embed` [1, 128, 128, 64] (NHWC;
the reference's [1, 64, 128, 128]), zero-initialised, resized bicubically
(PyTorch's kernel, ops/torch_resize.py) to the stem's grid and added after
conv1 -> BN -> ReLU, so it passes through every stage.
Heads (`mast_momen.py:20-22`, PyTorch default conv init, bias):
  post_convolution  3x3 conv 256 -> 64, stride 1:  f4, [B, H/4, W/4, 64];
  conv_semantic     3x3 conv 256 -> 128, stride 2: f8, [B, H/8, W/8, 128].
The momentum copy `conv_semantic_k` (`:22,43-49`, m = 0.999) is not a
submodule: its {"kernel", "bias"} live outside `params` (TrainState.extra)
and are applied with `semantic_head`.

Parameters: {"encoder": torchvision-named ResNet (models/resnet.py),
"pos_embed", "post_convolution", "conv_semantic"}.

Grids: pixel (y, x) of an H x W frame; cell (i, j) of the stride-s grid is
the conv output whose receptive field is centred near pixel (s i, s j).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from corrjax.models import heads
from corrjax.models import precision
from corrjax.models import resnet
from corrjax.ops import torch_resize

# Position shifting of the negatives' embedding (see `shift_embedding`).
POSITION_SHIFTS = ("none", "roll", "permute")
PERMUTE_PATCH = 8  # Stem cells per side of a permuted patch (16 px).


def shift_embedding(pe: jax.Array, mode: str, key: jax.Array | None = None,
                    patch: int = PERMUTE_PATCH) -> jax.Array:
  """The position embedding seen by inter-video negatives.

  The paper's position shifting (LIIR abstract and §1: "a position shifting
  strategy to remove the side-effect of position encoding during inter-video
  affinity computation"); LIIR_pytorch never implemented it (README: "PE
  Shuffle" not done; the unused `shuffle_patches`,
  `models/colorizer_momen.py:20-27`). corrjax's choices, applied to the
  embedding already resized to the stem grid [1, h, w, C]:
    'roll' (deterministic): rolled cyclically by (h // 2, w // 2), so a
      negative at cell p carries the embedding of p + (h/2, w/2) mod (h, w):
      an aligned window never pairs equal positions (h, w >= 2);
    'permute' (random, `key`): cut into non-overlapping patch x patch
      blocks (as `shuffle_patches`) that are moved by a random cyclic
      permutation (one cycle through all blocks: no block stays in place,
      unlike a plain random permutation); h and w must be multiples of
      `patch`.

  Args:
    pe: float [1, h, w, C], the resized embedding.
    mode: 'none' (identity, the public code), 'roll' or 'permute'.
    key: PRNG key ('permute' only).
    patch: block side in stem cells ('permute').
  """
  if mode == "none":
    return pe
  h, w = pe.shape[1:3]
  if mode == "roll":
    return jnp.roll(pe, (h // 2, w // 2), axis=(1, 2))
  if mode == "permute":
    if key is None:
      raise ValueError("position shift 'permute' needs a PRNG key.")
    if h % patch or w % patch:
      raise ValueError(f"position shift 'permute' needs a stem grid that is "
                       f"a multiple of {patch}; got {h} x {w}.")
    gh, gw, c = h // patch, w // patch, pe.shape[-1]
    blocks = pe.reshape(gh, patch, gw, patch, c).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(gh * gw, patch, patch, c)
    order = jax.random.permutation(key, gh * gw)
    # Block order[j] receives block order[j + 1]: a single cycle.
    source = jnp.zeros_like(order).at[order].set(jnp.roll(order, -1))
    blocks = blocks[source].reshape(gh, gw, patch, patch, c)
    return blocks.transpose(0, 2, 1, 3, 4).reshape(1, h, w, c)
  raise ValueError(f"unknown position shift {mode!r}; choose from "
                   f"{POSITION_SHIFTS}.")


def _head(features: int, stride: int, fan_in: int,
          name: str | None = None, dtype: Any = None) -> nn.Conv:
  """A 3x3 conv with bias, PyTorch padding 1 and PyTorch's default init."""
  return nn.Conv(features, (3, 3), strides=(stride, stride),
                 padding=[(1, 1), (1, 1)],
                 kernel_init=heads.torch_kernel_init,
                 bias_init=heads.torch_conv_bias_init(fan_in), dtype=dtype,
                 name=name)


def semantic_head(params: dict, trunk: jax.Array) -> jax.Array:
  """`conv_semantic` (or its momentum copy) on trunk features.

  Args:
    params: {"kernel": [3, 3, C, D], "bias": [D]}.
    trunk: float [B, h4, w4, C], stride-4 trunk features.

  Returns:
    float [B, ceil(h4 / 2), ceil(w4 / 2), D], stride-8 features.
  """
  d = params["kernel"].shape[-1]
  return _head(d, 2, 1).apply({"params": params}, trunk)


def momentum_update(ema: dict, params: dict, momentum: float) -> dict:
  """`_momentum_update_key_encoder` (`mast_momen.py:43-49`).

  ema <- ema * m + params * (1 - m). The reference runs it at the start of
  every forward pass, before the momentum head is applied, so a step's
  momentum features use the EMA already updated with that step's
  (pre-update) online head.
  """
  return jax.tree_util.tree_map(
      lambda k, q: k * momentum + jax.lax.stop_gradient(q) * (1 - momentum),
      ema, params)


class LIIRNet(nn.Module):
  """LIIR's trunk, position embedding and heads.

  Attributes:
    arch: 'resnet18' (the reference) or 'resnet10' (one block per stage,
      the same names: the `:smoke` config's trunk, which compiles faster).
    width: stem width (64).
    widths: per-stage widths ((64, 128, 256, 256)).
    strides: per-stage strides ((1, 2, 1, 1): output stride 4).
    pe_size: (h, w) of the stored embedding ((128, 128): the stem grid of
      a 256 x 256 training frame, where the resize is the identity).
    match_dim: post_convolution channels (64).
    semantic_dim: conv_semantic channels (128).
    use_pe: add the embedding (the reference's `ape=True`,
      `mast_momen.py:111,115`).
    dtype: compute dtype (models/precision.py); `__call__` and
      `pair_features` return float32.
  """
  arch: str = "resnet18"
  width: int = 64
  widths: Sequence[int] = (64, 128, 256, 256)
  strides: Sequence[int] = (1, 2, 1, 1)
  pe_size: Sequence[int] = (128, 128)
  match_dim: int = 64
  semantic_dim: int = 128
  use_pe: bool = True
  dtype: Any = None

  def setup(self):
    self.encoder = resnet.make_resnet(
        self.arch, width=self.width, widths=tuple(self.widths),
        strides=tuple(self.strides), use_max_pool=False,
        zero_init_last_bn=True, dtype=self.dtype)
    self.pos_embed = self.param("pos_embed", nn.initializers.zeros,
                                (1, *self.pe_size, self.width))
    trunk_dim = self.widths[-1]
    self.post_convolution = _head(self.match_dim, 1, 9 * trunk_dim,
                                  "post_convolution", self.dtype)
    self.conv_semantic = _head(self.semantic_dim, 2, 9 * trunk_dim,
                               "conv_semantic", self.dtype)

  def embedding(self, size: tuple[int, int], position_shift: str = "none",
                shift_key: jax.Array | None = None) -> jax.Array:
    """float [1, h, w, C]: `pos_embed` resized to `size`, then shifted."""
    pe = torch_resize.resize(self.pos_embed, tuple(size), "bicubic")
    return shift_embedding(pe, position_shift, shift_key)

  def trunk(self, x: jax.Array, train: bool = False,
            position_shift: str = "none",
            shift_key: jax.Array | None = None) -> jax.Array:
    """`feature_extraction(x, ape=True)` (`resnet.py:102-114`).

    Args:
      x: float [B, H, W, 3], Lab in [-1, 1] (data/frame_pairs.py).
      train: BatchNorm in training mode (statistics of this call's batch:
        the reference encodes target and references in separate calls,
        `mast_momen.py:111,115`).
      position_shift: see `shift_embedding`.
      shift_key: PRNG key of the 'permute' shift.

    Returns:
      float [B, ceil(H / 4), ceil(W / 4), widths[-1]].
    """

    hook = None
    if self.use_pe:
      pe = self.embedding((stem_grid(x.shape[1]), stem_grid(x.shape[2])),
                          position_shift, shift_key)
      hook = lambda stem: stem + pe
    feats = self.encoder(x, train, stem_hook=hook)
    return feats[f"stage{len(self.widths)}"]

  def __call__(self, x: jax.Array, train: bool = False,
               position_shift: str = "none",
               shift_key: jax.Array | None = None) -> dict[str, jax.Array]:
    """Trunk and both online heads.

    Returns:
      {"trunk": [B, H/4, W/4, 256], "match": f4 [B, H/4, W/4, 64],
       "semantic": f8 [B, H/8, W/8, 128]} (ceil division).
    """
    trunk = self.trunk(x, train, position_shift, shift_key)
    return precision.to_float32(
        {"trunk": trunk, "match": self.post_convolution(trunk),
         "semantic": self.conv_semantic(trunk)})


def init_momentum_head(params: dict) -> dict:
  """conv_semantic_k initialised as a copy of conv_semantic.

  The reference copies only when loading a pretrain (`main_dis.py:93-99`);
  from scratch its two heads start independent (liir_maskvos.md §3). A copy
  is the MoCo convention; with m = 0.999 the difference fades in ~5k steps.
  """
  return jax.tree_util.tree_map(jnp.array, params["conv_semantic"])


def pair_features(model: LIIRNet, variables: dict, momentum_params: dict,
                  target: jax.Array, reference: jax.Array, *,
                  train: bool = False, position_shift: str = "none",
                  shift_key: jax.Array | None = None
                  ) -> tuple[dict[str, jax.Array], dict]:
  """Everything one training pair needs (`mast_momen.py:110-125`).

  Args:
    model: the network.
    variables: {"params", "batch_stats"}.
    momentum_params: conv_semantic_k {"kernel", "bias"} (already updated
      for this step, see `momentum_update`).
    target: float [B, H, W, 3], the frame reconstructed.
    reference: float [B, H, W, 3], the frame copied from.
    train: BatchNorm mode; in training the returned batch_stats are
      updated by the target call, then the reference call (as the
      reference's two forward calls).
    position_shift: 'none', 'roll' or 'permute' (see `shift_embedding`).
    shift_key: PRNG key of the 'permute' shift.

  Returns:
    (features, batch_stats):
      "target_match" f4 [B, h4, w4, 64], "target_semantic" f8 [B, h8, w8,
      128] (online head); "reference_match" f4; "reference_keys" f8 of the
      momentum head, detached (intra-video stride-8 affinities);
      "queue_keys" f8 [B, h8, w8, 128], detached, to enqueue as negatives:
      equal to reference_keys with position_shift 'none', else computed by
      one more reference pass with the shifted embedding (BN in the same
      mode, its statistic updates discarded). The intra-video features do
      not depend on position_shift.
  """
  stats = variables.get("batch_stats", {})
  mutable = ["batch_stats"] if train else False

  def run(x, method, **kwargs):
    out = model.apply({"params": variables["params"], "batch_stats": stats},
                      x, train=train, method=method, mutable=mutable,
                      **kwargs)
    return out if train else (out, {"batch_stats": stats})

  tgt, updates = run(target, None)
  stats = updates["batch_stats"]
  ref_trunk, updates = run(reference, LIIRNet.trunk)
  stats = updates["batch_stats"]
  params = variables["params"]
  ref_match = model.apply({"params": params}, ref_trunk,
                          method=lambda m, t: m.post_convolution(t))
  keys = jax.lax.stop_gradient(semantic_head(momentum_params, ref_trunk))
  queue_keys = keys
  if position_shift != "none":
    shifted, _ = run(reference, LIIRNet.trunk, position_shift=position_shift,
                     shift_key=shift_key)
    queue_keys = jax.lax.stop_gradient(
        semantic_head(momentum_params, shifted))
  feats = precision.to_float32(
      {"target_match": tgt["match"], "target_semantic": tgt["semantic"],
       "reference_match": ref_match, "reference_keys": keys,
       "queue_keys": queue_keys})
  return feats, stats


def stem_grid(size: int) -> int:
  """Cells of the stride-2 stem along a side of `size` pixels."""
  return int(np.ceil(size / 2))
