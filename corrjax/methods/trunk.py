"""The ResNet trunk every method stores as `params["encoder"]`.

Label propagation reads it (torchvision names, see models/resnet.py);
methods re-export these two functions as their `encoder_spec` and
`encoder_variables`.
"""

import ml_collections

from corrjax import train_state as train_state_lib


def encoder_spec(config: ml_collections.ConfigDict) -> dict:
  """Architecture of the trunk `encoder_variables` returns."""
  m = config.model
  return dict(arch=m.arch, width=m.width, padding_mode=m.padding_mode)


def encoder_variables(state: train_state_lib.TrainState) -> dict:
  """Variables of the ResNet trunk (MoCo: the query encoder, minus fc)."""
  return {"params": state.params["encoder"],
          "batch_stats": state.batch_stats["encoder"]}
