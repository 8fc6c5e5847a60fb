"""tensorflow-datasets, imported only by the readers that need it.

TensorFlow (which tfds imports) costs about 4 s of start-up and, on a GPU
machine, would reserve GPU memory that JAX needs; so nothing imports it
until a tfds source is read, and then its GPUs are hidden from it first.
"""

import os


def import_tfds():
  """The `tensorflow_datasets` module, with TensorFlow kept off the GPUs."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds
