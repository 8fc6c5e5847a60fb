"""Two augmented views of one image per example, for MoCo and BYOL.

Sources: any folder of images (`data/frames.py` ImageFolderFrames, e.g. an
ImageNet `train/` tree), a tfds image dataset read by random access
(`tfds.data_source`, e.g. 'imagenet2012'), or the embedded synthetic frames.

As in `data/pipeline.py`, the batch of step s is a pure function of
(seed, s): global example e (`data/sampler.py`: (s - 1) * B + position)
reads image order_epoch[e mod N] with epoch = e // N, where order_epoch is
a seeded permutation of the N images (sampling without replacement within
an epoch, like the reference's shuffled DataLoader; epochs may straddle a
batch), and draws both views from
np.random.Generator(PCG64(SeedSequence([seed, e]))).

Each view is torchvision's RandomResizedCrop (`data/augment.py`, bilinear)
followed by `color_augment.augment_view` with the view's own config
(MoCo v2: identical views, `moco/loader.py:12-21`; BYOL: asymmetric).
"""

import threading

import ml_collections
import numpy as np

from corrjax.data import augment
from corrjax.data import color_augment
from corrjax.data import pipeline
from corrjax.data import sampler
from corrjax.data import tfds_import

_MAX_BAD_IMAGES_PER_EXAMPLE = 100


class TfdsImages:
  """Random access to the 'image' feature of a prepared tfds dataset.

  Args:
    name: tfds name, e.g. 'imagenet2012'.
    split: e.g. 'train'.
    data_dir: tfds data_dir ('' for the default ~/tensorflow_datasets).
  """

  def __init__(self, name: str, split: str, data_dir: str = ""):
    tfds = tfds_import.import_tfds()
    try:  # Never downloads: ImageNet needs a manual download anyway.
      self._source = tfds.data_source(name, split=split,
                                      data_dir=data_dir or None,
                                      download=False)
    except Exception as e:  # tfds raises many types for a missing dataset.
      raise FileNotFoundError(
          f"tfds dataset {name!r} split {split!r} is not available in "
          f"data_dir {data_dir or 'default'!r} ({type(e).__name__}); "
          f"prepare it with `tfds build {name} --file_format=array_record"
          "`.") from e
    self._name = f"{name}/{split}"
    if not len(self._source):
      raise FileNotFoundError(f"tfds dataset {self._name} is empty.")

  def __len__(self) -> int:
    return len(self._source)

  def describe(self, index: int) -> str:
    return f"{self._name}[{index}]"

  def load(self, index: int) -> np.ndarray:
    """uint8 [H, W, 3] (grayscale images are repeated to 3 channels)."""
    image = np.asarray(self._source[index]["image"])
    if image.ndim == 2:
      image = image[..., None]
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    return image


def image_source(data: ml_collections.ConfigDict):
  """The image source named by `config.data`: folder, tfds or synthetic."""
  if data.source == "tfds":
    return TfdsImages(data.tfds_name, data.tfds_split, data.root)
  if data.source in ("folder", "synthetic"):
    return pipeline.training_frames(data)
  raise ValueError(f"Unknown data.source {data.source!r}; expected "
                   "'folder', 'tfds' or 'synthetic'.")


class TwoViews:
  """Callable: global example index -> {"view1", "view2"} uint8 crops."""

  def __init__(self, images, data: ml_collections.ConfigDict, *, seed: int):
    self._images = images
    self._data = data
    self._seed = seed
    self._lock = threading.Lock()
    self._orders: dict[int, np.ndarray] = {}
    self._bad = sampler.BadItems()

  @property
  def bad_frames(self) -> set[int]:
    """Indices of the unreadable images skipped so far."""
    return self._bad.keys()

  def _order(self, epoch: int) -> np.ndarray:
    """The seeded image order of `epoch` (the last two are cached)."""
    with self._lock:
      order = self._orders.get(epoch)
      if order is None:
        order = np.random.default_rng([self._seed, epoch, 1]).permutation(
            len(self._images))
        self._orders = {e: o for e, o in self._orders.items()
                        if e >= epoch - 1}
        self._orders[epoch] = order
    return order

  def image_index(self, example: int) -> int:
    """The image read by global example `example` (before any skipping)."""
    epoch, position = divmod(example, len(self._images))
    return int(self._order(epoch)[position])

  def _load(self, example: int) -> np.ndarray:
    """The image of `example`; an unreadable one is replaced by another."""
    for attempt in range(_MAX_BAD_IMAGES_PER_EXAMPLE):
      index = self.image_index(example + attempt * 7919)  # A prime stride.
      try:
        image = self._images.load(index)
      except sampler.UNREADABLE_ERRORS as e:
        self._bad.record(index, "skipping unreadable image %s (%s); %d "
                         "skipped so far", self._images.describe(index), e)
        continue
      if image.ndim != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image {self._images.describe(index)} has shape "
                         f"{image.shape}; expected [H >= 2, W >= 2, 3].")
      return image
    raise OSError(f"{_MAX_BAD_IMAGES_PER_EXAMPLE} unreadable images in a row "
                  f"({len(self._bad)} of {len(self._images)} known "
                  "bad); is the data corrupt?")

  def _view(self, rng, image, aug):
    d = self._data
    crop, _ = augment.random_resized_crop(rng, image, d.crop_size,
                                          tuple(d.crop_scale),
                                          tuple(d.crop_ratio))
    return color_augment.augment_view(rng, crop, aug)

  def __call__(self, example: int) -> dict[str, np.ndarray]:
    image = self._load(int(example))
    rng = np.random.default_rng([self._seed, int(example)])
    return {"view1": self._view(rng, image, self._data.view1),
            "view2": self._view(rng, image, self._data.view2)}


def two_view_batches(images, data: ml_collections.ConfigDict, *,
                     global_batch_size: int, start_step: int,
                     total_steps: int, seed: int):
  """This host's batches of train steps start_step + 1 .. total_steps.

  Args:
    images: a source with `__len__`, `load(i)` and `describe(i)`.
    data: `config.data` (crop_size, crop_scale, crop_ratio, view1, view2,
      num_threads, prefetch).
    global_batch_size: examples per step over all hosts.
    start_step: train steps already done (0, or the restored step when
      resuming); see `sampler.host_batches`.
    total_steps: the last step.
    seed: data seed.

  Returns:
    (iterator of {"view1", "view2": uint8 [B / hosts, S, S, 3]} numpy
    dicts, the TwoViews callable whose `bad_frames` counts skipped images).
  """
  views = TwoViews(images, data, seed=seed)
  batches = sampler.host_batches(
      views, global_batch_size=global_batch_size, start_step=start_step,
      total_steps=total_steps, num_threads=data.num_threads,
      prefetch=data.prefetch)
  return batches, views
