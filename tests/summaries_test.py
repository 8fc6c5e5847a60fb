"""TensorBoard's own reader sees what `corrjax.summaries` writes."""

import io
import os
import subprocess
import sys
import types

import numpy as np
from PIL import Image
import pytest
from tensorboard.backend.event_processing import event_accumulator

from corrjax import summaries

# TensorBoard's reader uses its TensorFlow stub when the module
# `tensorboard.compat.notf` exists (its `no_tensorflow` build target, absent
# from the pip package): the check reads files as TensorBoard does, without
# paying TensorFlow's import.
sys.modules.setdefault("tensorboard.compat.notf",
                       types.ModuleType("tensorboard.compat.notf"))


def _read(logdir):
  acc = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.IMAGES: 0,
                                  event_accumulator.SCALARS: 0})
  acc.Reload()
  return acc


def test_scalars_and_images_read_back(tmp_path):
  writer = summaries.create_writer(str(tmp_path))
  writer.write_scalars(2, {"train/loss": 1.5, "train/lr": 0.25})
  writer.write_scalars(4, {"train/loss": 0.75})
  picture = np.zeros((6, 10, 3), np.uint8)
  picture[:, :5, 0] = 255
  writer.write_images(4, {"eval/overlay": picture[None]})
  writer.close()
  acc = _read(tmp_path)
  assert acc.Tags()["scalars"] == ["train/loss", "train/lr"]
  loss = acc.Scalars("train/loss")
  assert [(e.step, e.value) for e in loss] == [(2, 1.5), (4, 0.75)]
  (image,) = acc.Images("eval/overlay")
  assert (image.step, image.width, image.height) == (4, 10, 6)
  decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
  np.testing.assert_array_equal(decoded, picture)


def test_other_processes_write_nothing(tmp_path):
  writer = summaries.create_writer(str(tmp_path / "w"), enabled=False)
  writer.write_scalars(1, {"a": 1.0})
  writer.write_images(1, {"b": np.zeros((1, 2, 2, 3), np.uint8)})
  writer.close()
  assert not os.path.exists(tmp_path / "w")


def test_float_image_is_a_clear_error(tmp_path):
  writer = summaries.create_writer(str(tmp_path))
  with pytest.raises(ValueError, match="'x': dtype float32, expected uint8"):
    writer.write_images(1, {"x": np.zeros((2, 2, 3), np.float32)})
  writer.close()


def test_training_entry_points_do_not_import_tensorflow():
  """Start-up cost: TensorFlow's import is about 4 s of CPU."""
  code = ("import sys\n"
          "import corrjax.main, corrjax.run, corrjax.train\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'keras')))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.stdout.strip() == "[]", out.stdout[:500]
