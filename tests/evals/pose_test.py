"""Keypoint propagation and PCK end to end (corrjax.evals.pose)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.evals import features
from corrjax.evals import jhmdb
from corrjax.evals import pose
from corrjax.models import resnet


def _feature_fn():
  model = resnet.make_resnet("resnet18", width=8, strides=(1, 2, 1, 1),
                             num_stages=3, zero_init_last_bn=False)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  encoder = features.trunk_encoder(arch="resnet18", width=8,
                                   padding_mode="zeros")
  return features.frame_features(encoder, variables)


def _video(t=4):
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (48, 64, 3), np.uint8)
  joints = np.stack([rng.uniform(8, 40, 15), rng.uniform(8, 30, 15)], -1)
  return pose.PoseVideo("static", np.repeat(frame[None], t, 0),
                        np.repeat(joints[None], t, 0).astype(np.float32))


def test_a_static_video_keeps_every_keypoint():
  video = _video()
  # topk 1: each cell matches itself (similarity 1), copying its label.
  pred = pose.predict_pose(video, _feature_fn(), topk=1, radius=4.0,
                           context=2, temperature=0.05, crop_size=64)
  assert pred.shape == (4, 15, 2)
  first = jhmdb.decode_pose(jhmdb.joints_to_labels(
      jhmdb.scale_joints_to_grid(video.joints[0], 48, 64, 64, 64), 8, 8))
  for t in range(4):
    np.testing.assert_allclose(pred[t], first, atol=1e-4)


def test_pck_of_a_static_video_is_perfect_at_a_loose_threshold():
  result = pose.evaluate([_video()], _feature_fn(), topk=1, radius=4.0,
                         context=2, temperature=0.05, crop_size=64,
                         log=lambda _: None)
  assert result["pck"][0.5] == 1.0


def test_native_size_is_rejected():
  with pytest.raises(ValueError, match="crop_size > 0"):
    pose.predict_pose(_video(), _feature_fn(), topk=5, radius=4.0,
                      context=2, temperature=0.05, crop_size=-1)


def test_real_jhmdb_clip(data_root):
  videos = pose.read_videos(f"{data_root}/jhmdb_sample")
  assert len(videos) == 1 and videos[0].joints.shape == (40, 15, 2)
  clip = pose.PoseVideo(videos[0].name, videos[0].frames[:6],
                        videos[0].joints[:6])
  result = pose.evaluate([clip], _feature_fn(), topk=10, radius=12.0,
                         context=7, temperature=0.05, crop_size=64,
                         log=lambda _: None)
  values = [result["pck"][a] for a in sorted(result["pck"])]
  assert all(0 <= v <= 1 for v in values) and values == sorted(values)
