"""VOS evaluation: predictions, PNGs, and resuming an interrupted run."""

import os

import numpy as np

from corrjax.data import synthetic
from corrjax.evals import network
from corrjax.evals import protocol
from corrjax.evals import vos


def _videos():
  return [vos.Video(v.name, v.frames, v.masks.astype(np.int32))
          for v in synthetic.make_videos(3, num_videos=2, num_frames=5,
                                         height=32, width=32, max_objects=2)]


class _ColourFeatures:
  """Frames -> L2-normalised mean colour of 8x8 cells (+1), counting calls."""

  def __init__(self):
    self.frames_seen = 0

  def __call__(self, frames):
    self.frames_seen += len(frames)
    t, h, w, _ = frames.shape
    x = frames.reshape(t, h // 8, 8, w // 8, 8, 3).mean((2, 4)) / 255 + 1
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _evaluate(videos, feature_fn, out_dir, topk=3):
  net = network.Network("trained", feature_fn, stride=8)
  proto = protocol.Propagation(topk=topk, radius=3.0, context=2,
                               temperature=0.05)
  return vos.evaluate(videos, net, proto, out_dir=out_dir, log=lambda _: None)


def test_rerun_reads_finished_videos_back(tmp_path):
  videos = _videos()
  first_fn = _ColourFeatures()
  first = _evaluate(videos, first_fn, str(tmp_path))
  assert first_fn.frames_seen == 1 + 10  # Fingerprint + every frame.
  for v in videos:
    assert os.path.isfile(tmp_path / "complete" / f"{v.name}.json")
    assert len(os.listdir(tmp_path / v.name)) == 5  # PNGs only.
    assert os.path.isfile(tmp_path / "overlays" / f"{v.name}.png")

  rerun_fn = _ColourFeatures()
  again = _evaluate(videos, rerun_fn, str(tmp_path))
  assert rerun_fn.frames_seen == 1  # Only the fingerprint.
  assert again["global"] == first["global"]


def test_rerun_recomputes_after_a_change_or_a_lost_file(tmp_path):
  videos = _videos()
  _evaluate(videos, _ColourFeatures(), str(tmp_path))
  other_protocol = _ColourFeatures()
  _evaluate(videos, other_protocol, str(tmp_path), topk=2)
  assert other_protocol.frames_seen == 1 + 10

  os.remove(tmp_path / videos[1].name / "00003.png")
  lost_file = _ColourFeatures()
  _evaluate(videos, lost_file, str(tmp_path), topk=2)
  assert lost_file.frames_seen == 1 + 5  # Only the damaged video.

  class _OtherNet(_ColourFeatures):
    def __call__(self, frames):
      return np.roll(super().__call__(frames), 1, axis=-1)

  other_net = _OtherNet()
  _evaluate(videos, other_net, str(tmp_path), topk=2)
  assert other_net.frames_seen == 1 + 10
