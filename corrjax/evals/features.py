"""Per-cell features of video frames for label propagation."""

from collections.abc import Callable, Sequence
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from corrjax.data import normalization
from corrjax.models import resnet
from corrjax.ops import l2norm


@dataclasses.dataclass(frozen=True)
class Encoder:
  """What evaluation needs of a network: frames in, per-cell features out.

  Every method exports one (`method.encoder(config)`); the evaluators know
  nothing else about it.

  Attributes:
    apply: pure, jit-able fn(variables, frames uint8 [B, H, W, 3] RGB) ->
      float32 [B, ceil(H / stride), ceil(W / stride), C], L2-normalised
      per cell. Input normalisation (RGB statistics, Lab, ...) is inside.
    stride: pixels per feature cell.
    raw_apply: optional, `apply` before the L2 normalisation, for
      protocols on raw dot products (LIIR's); None: they use `apply`.
  """
  apply: Callable[[Any, jax.Array], jax.Array]
  stride: int
  raw_apply: Callable[[Any, jax.Array], jax.Array] | None = None


def trunk_encoder(*, arch: str, width: int, padding_mode: str,
                  strides: Sequence[int] = (1, 2, 1, 1), num_stages: int = 3,
                  normalization_name: str = "imagenet") -> Encoder:
  """A ResNet trunk read at stage `num_stages` (the CRW protocol).

  The protocol drops layer4 and reads layer3 at stride 8 (videowalk
  `code/test.py:45-86`, `--remove-layers layer4`), with ImageNet statistics.
  `variables` of the returned encoder are the trunk's {"params",
  "batch_stats"} (unused layer4 weights may be present).
  """
  model = resnet.make_resnet(arch, width=width, strides=tuple(strides),
                             padding_mode=padding_mode, num_stages=num_stages)

  def apply(variables, frames):
    x = normalization.normalize(frames, name=normalization_name)
    out = model.apply(variables, x, train=False)[f"stage{num_stages}"]
    return l2norm.l2_normalize(out)

  stride = 4 * int(np.prod(strides[:num_stages]))
  return Encoder(apply=apply, stride=stride)


def frame_features(encoder: Encoder, variables, batch_size: int = 8
                   ) -> Callable[[np.ndarray], np.ndarray]:
  """fn(frames uint8 [T, H, W, 3]) -> float32 [T, h, w, C] numpy.

  Frames go through `encoder.apply` (jit-compiled once per frame size) in
  batches of `batch_size`; the last batch is padded with copies.
  """
  encode = jax.jit(encoder.apply)

  def feature_fn(frames: np.ndarray) -> np.ndarray:
    t = len(frames)
    pad = (-t) % batch_size
    padded = np.concatenate([frames, np.repeat(frames[-1:], pad, 0)])
    outs = [np.asarray(encode(variables, jnp.asarray(padded[i:i + batch_size])))
            for i in range(0, len(padded), batch_size)]
    return np.concatenate(outs)[:t]

  return feature_fn


def fuse_feature_fns(feature_fns: Sequence[Callable[[np.ndarray], np.ndarray]],
                     weights: Sequence[float]
                     ) -> Callable[[np.ndarray], np.ndarray]:
  """Late fusion of several networks' per-cell features (SFC).

  f = normalise(concat_i(w_i * normalise(f_i))) per cell, as SFC
  `code/test_vos.py:61-79` (FC weighted by --lambd 1.75, the semantic net by
  1; F.normalize over channels). The dot product of two fused vectors is
  sum_i w_i^2 s_i / sum_i w_i^2, a weighted mean of each net's cosine.

  Args:
    feature_fns: fn(frames uint8 [T, H, W, 3]) -> float32 [T, h, w, C_i],
      all on the same cell grid (same stride and input size).
    weights: one weight per network.

  Returns:
    fn(frames) -> float32 [T, h, w, sum C_i], L2-normalised per cell.
  """
  if len(feature_fns) != len(weights) or not feature_fns:
    raise ValueError(f"{len(feature_fns)} feature extractors and "
                     f"{len(weights)} weights; need one weight each.")

  def fused(frames: np.ndarray) -> np.ndarray:
    parts = []
    for fn, weight in zip(feature_fns, weights):
      f = fn(frames)
      if parts and f.shape[:3] != parts[0].shape[:3]:
        raise ValueError(f"fused networks disagree on the cell grid: "
                         f"{parts[0].shape[1:3]} vs {f.shape[1:3]}; use "
                         "the same stride (layer3 at stride 8).")
      parts.append(weight * l2norm.l2_normalize(jnp.asarray(f)))
    return np.asarray(l2norm.l2_normalize(jnp.concatenate(parts, -1)))

  return fused

