"""Mask-VOS networks: visual encoder E, frame-mask encoder V, decoder D.

Li et al., CVPR 2023, §3 and §3.3 "Network Configuration"; Alg. 1. The
released code's layout (reference/liir_maskvos.md §2.3; `resnet50.py`,
`net.py` L45-80, `modules.py` L382-448) is followed where the paper is
silent (the decoder's skip layers and pre-activation residual blocks).

Shapes: frames float [B, H, W, 3] normalised, H and W multiples of 8;
feature maps at output stride 8 are [B, h, w, C] with h = H/8, w = W/8;
the stride-4 skip is [B, 2h, 2w, C]. Masks are float [B, H, W] (one object,
soft in [0, 1]) at frame resolution unless said otherwise.

  E (`VisualEncoder`): ResNet-18 with the strides of layer3 and layer4
    removed (strides 1, 2, 1, 1: output stride 8), or ResNet-50 up to res4
    (layer3) with its stride dropped (strides 1, 2, 1; 3 stages). A 1x1
    conv maps the last stage ("res4") to the D = 128 key, L2-normalised.
    Skips: layer2 (stride 8) and layer1 (stride 4).
  V (`MaskEncoder`): the same trunk on [RGB, mask] (4 channels) and a 1x1
    conv to D' = 512. Each object is encoded on its own, as the released
    code (no "other objects" channel); its fusion with E's res4
    (`net2.py` FeatureFusionBlock) is not in the paper and left out.
  D (`MaskDecoder`): [V_q, Vbar_q] (2 D') -> ResBlock -> (3x3 skip conv on
    the stride-8 skip, added; ResBlock) -> (3x3 skip conv on the stride-4
    skip + x2 bilinear upsampling; ResBlock) -> ReLU -> 1x1 conv to one
    logit -> x4 bilinear upsampling to the frame. The paper's "two residual
    blocks connected with E through skip layers" are the last two blocks;
    the first (compress) block is the released code's.

Parameters: {"encoder": {"trunk", "key"}, "mask_encoder": {"trunk",
"value"}, "decoder": {...}}; trunks use models/resnet.py's torchvision names.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from corrjax.losses import mask_vos as losses
from corrjax.models import precision
from corrjax.models import resnet

# Backbone layouts of §3.3: (strides, num_stages) per arch.
LAYOUTS = {
    "resnet10": ((1, 2, 1, 1), 4),  # ResNet-18's layout, one block a stage.
    "resnet18": ((1, 2, 1, 1), 4),
    "resnet50": ((1, 2, 1), 3),
}


def _trunk(arch: str, width: int, name: str,
           dtype: Any = None) -> resnet.ResNet:
  strides, num_stages = LAYOUTS[arch]
  return resnet.make_resnet(arch, width=width, strides=strides,
                            num_stages=num_stages, dtype=dtype, name=name)


def _res4(feats: dict[str, jax.Array]) -> jax.Array:
  return feats[f"stage{len(feats) - 1}"]


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of float [B, H, W, C] (half-pixel centres, no
  antialiasing when upsampling: F.interpolate(align_corners=False))."""
  return jax.image.resize(x, x.shape[:1] + tuple(size) + x.shape[-1:],
                          "bilinear", antialias=False)


def downsample_mask(mask: jax.Array, stride: int = 8) -> jax.Array:
  """Area average of float [B, H, W, C] over stride x stride blocks."""
  b, h, w, c = mask.shape
  return mask.reshape(b, h // stride, stride, w // stride, stride,
                      c).mean(axis=(2, 4))


class VisualEncoder(nn.Module):
  """E: frames [B, H, W, 3] -> {"key" [B, h, w, D] unit-norm, "res4",
  "skip8" (layer2, stride 8), "skip4" (layer1, stride 4)}."""
  arch: str = "resnet18"
  width: int = 64
  key_dim: int = 128
  dtype: Any = None  # Compute dtype; outputs are float32.

  @nn.compact
  def __call__(self, frames: jax.Array, train: bool = False
               ) -> dict[str, jax.Array]:
    feats = _trunk(self.arch, self.width, "trunk", self.dtype)(frames, train)
    res4 = _res4(feats)
    key = nn.Conv(self.key_dim, (1, 1), dtype=self.dtype, name="key")(res4)
    return precision.to_float32(
        {"key": l2_normalize(precision.to_float32(key)), "res4": res4,
         "skip8": feats["stage2"], "skip4": feats["stage1"]})


class MaskEncoder(nn.Module):
  """V: frames [B, H, W, 3], masks [B, H, W] -> values [B, h, w, D']."""
  arch: str = "resnet18"
  width: int = 64
  value_dim: int = 512
  dtype: Any = None  # Compute dtype; outputs are float32.

  @nn.compact
  def __call__(self, frames: jax.Array, masks: jax.Array,
               train: bool = False) -> jax.Array:
    x = jnp.concatenate([frames, masks[..., None].astype(frames.dtype)], -1)
    feats = _trunk(self.arch, self.width, "trunk", self.dtype)(x, train)
    return precision.to_float32(nn.Conv(
        self.value_dim, (1, 1), dtype=self.dtype, name="value")(_res4(feats)))


class ResBlock(nn.Module):
  """Pre-activation residual block without BN (STCN `ResBlock`)."""
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype,
                  name="conv1")(nn.relu(x))
    out = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype,
                  name="conv2")(nn.relu(out))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype,
                  name="downsample")(x)
    return x + out


class MaskDecoder(nn.Module):
  """D: [V_q, Vbar_q] [B, h, w, 2D'] + E's skips -> logits [B, H, W]."""
  widths: Sequence[int] = (512, 256, 128)
  dtype: Any = None  # Compute dtype; the logits are float32.

  @nn.compact
  def __call__(self, x: jax.Array, skip8: jax.Array,
               skip4: jax.Array) -> jax.Array:
    c1, c2, c3 = self.widths
    conv = lambda c, k, **kw: nn.Conv(c, k, dtype=self.dtype, **kw)  # pylint: disable=g-long-lambda
    x = ResBlock(c1, self.dtype, name="compress")(x)
    x = x + conv(c1, (3, 3), padding=1, name="skip8_conv")(skip8)
    x = ResBlock(c2, self.dtype, name="block8")(x)
    x = resize(x, skip4.shape[1:3])
    x = x + conv(c2, (3, 3), padding=1, name="skip4_conv")(skip4)
    x = ResBlock(c3, self.dtype, name="block4")(x)
    x = precision.to_float32(conv(1, (1, 1), name="pred")(nn.relu(x)))
    h, w = skip4.shape[1:3]
    return resize(x, (4 * h, 4 * w))[..., 0]


class MaskVOSNet(nn.Module):
  """E, V and D, and the training forward of Eqs. 5-9.

  Attributes:
    arch: 'resnet18' or 'resnet50' (both E and V).
    width: trunk width (64 in the paper; tiny in tests).
    key_dim: D (128). value_dim: D' (512).
    decoder_widths: D's block widths.
    temperature: the affinity's (Eq. 6) temperature (1 in the paper).
    dtype: compute dtype of E, V and D (models/precision.py); their
      outputs, the affinity and the read-out are float32.
  """
  arch: str = "resnet18"
  width: int = 64
  key_dim: int = 128
  value_dim: int = 512
  decoder_widths: Sequence[int] = (512, 256, 128)
  temperature: float = 1.0
  dtype: Any = None

  def setup(self):
    self.encoder = VisualEncoder(self.arch, self.width, self.key_dim,
                                 self.dtype)
    self.mask_encoder = MaskEncoder(self.arch, self.width, self.value_dim,
                                    self.dtype)
    self.decoder = MaskDecoder(tuple(self.decoder_widths), self.dtype)

  def encode(self, frames, train=False):
    return self.encoder(frames, train)

  def encode_mask(self, frames, masks, train=False):
    return self.mask_encoder(frames, masks, train)

  def decode(self, x, skip8, skip4):
    return self.decoder(x, skip8, skip4)

  def __call__(self, ref_frames: jax.Array, ref_masks: jax.Array,
               query_frame: jax.Array, train: bool = False
               ) -> dict[str, jax.Array]:
    """Per-object prediction of the query from N references (Eqs. 5-9).

    Args:
      ref_frames: float [B, N, H, W, 3].
      ref_masks: float [B, N, O, H, W] (pseudo) masks of O objects.
      query_frame: float [B, H, W, 3].
      train: BatchNorm mode of the trunks.

    Returns:
      {"object_logits": [B, O, H, W] D's logits (Eq. 9; aggregate with
       losses.mask_vos.soft_aggregate), "coarse": [B, O, h, w] Ybar_q
       (Eq. 8), "query_key": [B, h, w, D], "ref_keys": [B, N, h, w, D]}.
    """
    b, n, hh, ww = ref_frames.shape[:4]
    o = ref_masks.shape[2]
    both = self.encode(jnp.concatenate(
        [ref_frames.reshape((b * n, hh, ww, 3)), query_frame]), train)
    keys = both["key"]
    h, w = keys.shape[1:3]
    ref_keys = keys[:b * n].reshape(b, n, h, w, -1)
    q = {k: v[b * n:] for k, v in both.items()}
    # Eq. 5: V_r per reference frame and object.
    frames_no = jnp.broadcast_to(ref_frames[:, :, None],
                                 (b, n, o, hh, ww, 3))
    values = self.encode_mask(frames_no.reshape(b * n * o, hh, ww, 3),
                              ref_masks.reshape(b * n * o, hh, ww), train)
    values = values.reshape(b, n, o, h * w, -1)
    values = jnp.moveaxis(values, 2, 1).reshape(b, o, n * h * w, -1)
    aff = losses.affinity(ref_keys.reshape(b, n * h * w, -1),
                          q["key"].reshape(b, h * w, -1),
                          temperature=self.temperature)  # Eq. 6
    v_q = jax.vmap(losses.readout, in_axes=(None, 1), out_axes=1)(
        aff, values)  # Eq. 7: [B, O, hw, D']
    small = downsample_mask(jnp.moveaxis(
        ref_masks.reshape(b * n, o, hh, ww), 1, -1))  # [BN, h, w, O]
    coarse = losses.readout(aff, small.reshape(b, n * h * w, o))  # Eq. 8
    coarse = jnp.moveaxis(coarse.reshape(b, h, w, o), -1, 1)
    logits = self.refine(query_frame, q, v_q, coarse, train)
    return {"object_logits": logits, "coarse": coarse,
            "query_key": q["key"], "ref_keys": ref_keys}

  def refine(self, query_frame, q, v_q, masks, train=False):
    """One D pass (Eq. 9) per object given a coarse or previous mask.

    Args:
      query_frame: float [B, H, W, 3].
      q: E's outputs for the query ("skip8", "skip4").
      v_q: float [B, O, h*w, D'] read-out values (Eq. 7).
      masks: float [B, O, h', w'] masks of the query (Ybar_q at stride 8,
        or a previous round's prediction at frame size); resized to the
        frame for V.
      train: BatchNorm mode.

    Returns:
      float [B, O, H, W] per-object logits.
    """
    b, o = v_q.shape[:2]
    hh, ww = query_frame.shape[1:3]
    h, w = q["skip8"].shape[1:3]
    full = resize(masks.reshape(b * o, *masks.shape[2:], 1), (hh, ww))
    frames_o = jnp.broadcast_to(query_frame[:, None], (b, o, hh, ww, 3))
    v_bar = self.encode_mask(frames_o.reshape(b * o, hh, ww, 3),
                             full[..., 0], train)  # Eq. 9: Vbar_q
    x = jnp.concatenate([v_q.reshape(b * o, h, w, -1), v_bar], axis=-1)
    rep = lambda s: jnp.repeat(s, o, axis=0)  # pylint: disable=g-long-lambda
    logits = self.decode(x, rep(q["skip8"]), rep(q["skip4"]))
    return logits.reshape(b, o, hh, ww)
