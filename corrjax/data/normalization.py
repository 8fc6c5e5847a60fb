"""Per-channel input normalisation of uint8 RGB images."""

import jax.numpy as jnp

# Training in CRW and SFC uses CIFAR statistics (videowalk
# `code/utils/augs.py:10-13`); label propagation uses ImageNet statistics
# (videowalk `code/data/vos.py:44-59`).
STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}


def normalize(images, *, name: str):
  """RGB [..., 3] -> float32 (x - mean) / std with x in [0, 1].

  uint8 images are divided by 255; float images are taken to be in [0, 1]
  already (e.g. frames resized in float, as the reference resizes them).
  """
  if name not in STATS:
    raise ValueError(f"Unknown normalization {name!r}; choose from "
                     f"{sorted(STATS)}.")
  mean, std = (jnp.asarray(v, jnp.float32) for v in STATS[name])
  x = jnp.asarray(images)
  x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(
      jnp.float32)
  return (x - mean) / std
