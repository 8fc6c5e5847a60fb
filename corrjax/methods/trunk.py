"""The ResNet trunk every SFC/CRW method stores as `params["encoder"]`:
its evaluation seam.

Label propagation reads it at `config.features` (layer3 at stride 8 with
ImageNet statistics: the CRW protocol); methods re-export these two
functions as their `encoder` and `encoder_variables` (methods/__init__.py).
"""

import ml_collections

from corrjax import config_defaults
from corrjax.evals import features


def encoder(config: ml_collections.ConfigDict) -> features.Encoder:
  """frames -> layer-`num_stages` features of the trunk, L2-normalised."""
  m = config.model
  f = dict(config_defaults.TRUNK_FEATURES,
           **(config.get("features") or {}))  # Old workdirs: defaults.
  return features.trunk_encoder(
      arch=m.arch, width=m.width, padding_mode=m.padding_mode,
      strides=tuple(f["strides"]), num_stages=f["num_stages"],
      normalization_name=f["normalization"])


def encoder_variables(tree: dict) -> dict:
  """{"params", "batch_stats"} of the trunk in a state tree (a TrainState
  as a dict, `networks.state_tree`, or a restored checkpoint). MoCo: the
  query encoder, minus fc."""
  return {"params": tree["params"]["encoder"],
          "batch_stats": tree["batch_stats"]["encoder"]}
