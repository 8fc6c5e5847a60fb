"""A network as the evaluators see it: per-cell features, or its own
video predictor.

Label-propagation benchmarks need `features` (frames -> L2-normalised
cells at `stride`); a method that predicts masks itself (Mask-VOS, with a
decoder and a memory) also provides `predict_masks`, which the VOS
benchmark then calls instead of propagating labels.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

import numpy as np

from corrjax.evals import features as features_lib


@dataclasses.dataclass(frozen=True)
class Network:
  """One evaluated network.

  Attributes:
    label: names its results ('trained', 'random_init', 'fused', ...).
    features: fn(frames uint8 [T, H, W, 3]) -> float32 [T, h, w, C]
      numpy, L2-normalised per cell, or None.
    stride: pixels per feature cell.
    predict_masks: optional fn(frames uint8 [T, H, W, 3], first mask int
      [H, W], protocol) -> int32 [T, H, W] ids, replacing label propagation
      on VOS benchmarks.
    raw_features: optional, as `features` before L2 normalisation: what
      protocols on raw dot products read (LIIR's, evals/vos.py); None:
      they read `features`.
    predictor_settings: what besides the protocol decides the output of
      `predict_masks` (Mask-VOS: `config.inference`, e.g. the refinement
      rounds R); part of the results folder's name (evals/runner.py), so
      that R = 0 never reads back or overwrites the videos of R = 2.
  """
  label: str
  features: Callable[[np.ndarray], np.ndarray] | None
  stride: int
  predict_masks: Callable[..., np.ndarray] | None = None
  raw_features: Callable[[np.ndarray], np.ndarray] | None = None
  predictor_settings: Mapping[str, Any] | None = None


def from_encoder(label: str, encoder: features_lib.Encoder, variables: Any,
                 *, batch_size: int = 8,
                 predict_masks: Callable[..., np.ndarray] | None = None,
                 predictor_settings: Mapping[str, Any] | None = None
                 ) -> Network:
  """The Network of an Encoder with its variables."""
  raw = None
  if encoder.raw_apply is not None:
    raw = features_lib.frame_features(
        features_lib.Encoder(apply=encoder.raw_apply, stride=encoder.stride),
        variables, batch_size)
  return Network(label=label, stride=encoder.stride,
                 features=features_lib.frame_features(encoder, variables,
                                                      batch_size),
                 predict_masks=predict_masks, raw_features=raw,
                 predictor_settings=predictor_settings)


def fuse(label: str, networks: Sequence[Network],
         weights: Sequence[float]) -> Network:
  """SFC's late fusion of several networks (features.fuse_feature_fns)."""
  strides = {n.stride for n in networks}
  if len(strides) != 1:
    raise ValueError(f"fused networks have different strides {sorted(strides)}"
                     "; fuse features on one cell grid.")
  missing = [n.label for n in networks if n.features is None]
  if missing:
    raise ValueError(f"networks {missing} have no features to fuse.")
  return Network(label=label, stride=strides.pop(),
                 features=features_lib.fuse_feature_fns(
                     [n.features for n in networks], weights))
