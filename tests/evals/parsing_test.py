"""Part propagation on a VIP-layout folder, scored by mIoU."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from corrjax.evals import features
from corrjax.evals import parsing
from corrjax.models import resnet


def _write_vip(root, name, frames, ids):
  image_dir = os.path.join(root, "Images", name)
  label_dir = os.path.join(root, "Annotations", "Category_ids", name)
  os.makedirs(image_dir)
  os.makedirs(label_dir)
  for t, (frame, label) in enumerate(zip(frames, ids)):
    Image.fromarray(frame).save(os.path.join(image_dir, f"{t:06d}.jpg"),
                                quality=100)
    Image.fromarray(label.astype(np.uint8)).save(
        os.path.join(label_dir, f"{t:06d}.png"))


def test_static_video_is_parsed_perfectly(tmp_path):
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (40, 56, 3), np.uint8)
  ids = np.zeros((40, 56), np.int64)
  ids[8:32, 16:40] = 3
  ids[:, 48:] = 7
  ids[0, 0] = 255  # Ignored GT.
  _write_vip(str(tmp_path), "v1", [frame] * 3, [ids] * 3)
  videos = parsing.read_videos(str(tmp_path))
  assert [v.name for v in videos] == ["v1"] and videos[0].masks.shape == (
      3, 40, 56)
  model = resnet.make_resnet("resnet18", width=8, strides=(1, 2, 1, 1),
                             num_stages=3, zero_init_last_bn=False)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  feature_fn = features.frame_features(
      features.trunk_encoder(arch="resnet18", width=8, padding_mode="zeros"),
      variables)
  # topk 1 on identical frames copies each cell's own label; a 64-px square
  # keeps the part boundaries on the 8-px grid of the 56-px-wide frame only
  # approximately, so compare with the round trip of frame 0 itself.
  result = parsing.evaluate(videos, feature_fn, topk=1, radius=3.0,
                            context=2, temperature=0.05, crop_size=64,
                            log=lambda _: None)
  iou = result["per_class_iou"]
  assert np.isnan(iou[1]) and np.isnan(iou[19])  # Classes never present.
  assert iou[0] > 0.8 and iou[3] > 0.8 and iou[7] > 0.8
  assert result["mIoU"] == np.nanmean(iou)
