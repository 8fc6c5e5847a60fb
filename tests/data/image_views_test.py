"""Two-view image batches from folders, tfds and synthetic frames."""

import os

import numpy as np
from PIL import Image
import pytest

from corrjax import config_defaults
from corrjax.data import image_views


def _data(**overrides):
  data = config_defaults.image_views_data(batch_size=4, crop_size=16,
                                          num_threads=1, prefetch=1)
  data.synthetic = config_defaults.synthetic_videos(
      seed=1, num_videos=2, num_frames=3, size=32)
  data.update(overrides)
  return data


def _write_folder(root, n=5):
  for i in range(n):
    folder = os.path.join(root, f"class{i % 2}")
    os.makedirs(folder, exist_ok=True)
    colour = np.full((20 + i, 24, 3), 40 * i, np.uint8)
    Image.fromarray(colour).save(os.path.join(folder, f"{i}.png"))


def _take(data, *, start_step, steps, source=None):
  source = source or image_views.image_source(data)
  batches, views = image_views.two_view_batches(
      source, data, global_batch_size=data.batch_size, start_step=start_step,
      total_steps=start_step + steps, seed=3)
  return [next(batches) for _ in range(steps)], views


def test_batches_depend_only_on_seed_and_step():
  data = _data(source="synthetic")
  run, _ = _take(data, start_step=0, steps=3)
  resumed, _ = _take(data, start_step=2, steps=1)
  assert set(run[0]) == {"view1", "view2"}
  assert run[0]["view1"].shape == (4, 16, 16, 3)
  assert run[0]["view1"].dtype == np.uint8
  for key in ("view1", "view2"):
    np.testing.assert_array_equal(run[2][key], resumed[0][key])
  assert not np.array_equal(run[0]["view1"], run[0]["view2"])


def test_each_epoch_reads_every_image_once(tmp_path):
  _write_folder(str(tmp_path), n=5)
  data = _data(root=str(tmp_path))
  source = image_views.image_source(data)
  assert len(source) == 5
  views = image_views.TwoViews(source, data, seed=0)
  epochs = [[views.image_index(e) for e in range(5 * k, 5 * k + 5)]
            for k in range(3)]
  for order in epochs:
    assert sorted(order) == list(range(5))
  assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


def test_unreadable_images_are_skipped_and_counted(tmp_path):
  _write_folder(str(tmp_path), n=4)
  with open(os.path.join(tmp_path, "class0", "broken.jpg"), "wb") as f:
    f.write(b"not a jpeg")
  data = _data(root=str(tmp_path))
  batches, views = _take(data, start_step=0, steps=2)
  assert len(views.bad_frames) == 1
  assert batches[1]["view2"].shape == (4, 16, 16, 3)


def test_tfds_source_reads_images_by_index():
  tfds = pytest.importorskip("tensorflow_datasets")
  data = _data(source="tfds", tfds_name="imagenet2012", tfds_split="train")
  with tfds.testing.mock_data(num_examples=6):
    source = image_views.image_source(data)
    assert len(source) == 6
    assert source.load(2).dtype == np.uint8 and source.load(2).shape[-1] == 3
    batches, _ = _take(data, start_step=0, steps=1, source=source)
  assert batches[0]["view1"].shape == (4, 16, 16, 3)


def test_config_errors_are_one_line():
  with pytest.raises(ValueError, match="config.data.root is empty"):
    image_views.image_source(_data(source="folder", root=""))
  with pytest.raises(ValueError, match="Unknown data.source 'nope'"):
    image_views.image_source(_data(source="nope"))
  with pytest.raises(FileNotFoundError, match="not available"):
    image_views.image_source(_data(source="tfds",
                                   tfds_name="no_such_dataset_xyz"))


def test_davis_training_frames(data_root):
  data = _data(root=os.path.join(data_root, "davis2016"),
               pattern="JPEGImages/240p/*/*.jpg", batch_size=2)
  batches, views = _take(data, start_step=0, steps=1)
  assert len(image_views.image_source(data)) == 2079
  assert batches[0]["view1"].shape == (2, 16, 16, 3)
  assert not views.bad_frames
