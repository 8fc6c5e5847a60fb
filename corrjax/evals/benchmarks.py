"""Benchmark readers: `config.evals.<name>` -> the videos it scores.

A benchmark config holds its reader (`source`, `root`, `split`, `videos`)
and its protocol (evals/protocol.py). Sources:

  synthetic   the embedded synthetic videos (held out from training);
  davis       a DAVIS folder (2016 binary or 2017 palette masks);
  tfds_davis  tensorflow-datasets' prepared `davis` (root = data_dir);
  jhmdb       JHMDB keypoints (PCK);
  vip         VIP human parts (mIoU).

`videos` selects videos by name or count: '' (all), '4' (the first 4),
'blackswan,bmx-trees' (these), or the path of a text file with one name per
line (DAVIS ImageSets style).
"""

import os

import numpy as np

from corrjax.data import synthetic
from corrjax.evals import davis_data
from corrjax.evals import parsing
from corrjax.evals import pose
from corrjax.evals import tfds_davis
from corrjax.evals import vos

SOURCES = ("synthetic", "davis", "tfds_davis", "jhmdb", "vip")


def parse_selection(spec: str) -> int | list[str] | None:
  """'' -> None (all); '4' -> 4; 'a,b' or a list file -> names."""
  spec = str(spec).strip()
  if not spec:
    return None
  if spec.isdigit():
    return int(spec)
  if os.path.isfile(spec):
    with open(spec) as f:
      return [line.strip() for line in f if line.strip()]
  if spec.endswith(".txt"):
    raise FileNotFoundError(f"video list {spec!r} does not exist.")
  return [name.strip() for name in spec.split(",") if name.strip()]


def select(names: list[str], spec: str) -> list[str]:
  """The names `spec` (see parse_selection) picks, in `spec`'s order.

  Raises:
    ValueError: a requested name is not among `names`.
  """
  chosen = parse_selection(spec)
  if chosen is None:
    return names
  if isinstance(chosen, int):
    return names[:chosen]
  unknown = [n for n in chosen if n not in names]
  if unknown:
    raise ValueError(f"unknown videos {unknown}; available: "
                     f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
  return chosen


def read_videos(bench, data_root: str = "") -> list:
  """The videos of one benchmark config (vos.Video or pose.PoseVideo)."""
  root = bench.get("root", "") or data_root
  spec = bench.get("videos", "")
  pick = lambda names: select(names, spec)  # pylint: disable=unnecessary-lambda-assignment
  if bench.source == "synthetic":
    s = bench.synthetic
    made = synthetic.make_videos(
        s.seed, num_videos=s.num_videos, num_frames=s.num_frames,
        height=s.height, width=s.width, max_objects=s.max_objects,
        name_offset=100_000)
    by_name = {v.name: v for v in made}
    return [vos.Video(n, by_name[n].frames, by_name[n].masks.astype(np.int32))
            for n in pick(list(by_name))]
  if bench.source == "davis":
    names = pick(davis_data.sequence_names(root, bench.split))
    return [davis_data.read_video(root, n) for n in names]
  if bench.source == "tfds_davis":
    videos = tfds_davis.load_videos(split=bench.split, config="480p",
                                    data_dir=root or None)
    by_name = {v.name: v for v in videos}
    return [by_name[n] for n in pick(list(by_name))]
  if bench.source == "vip":
    return parsing.read_videos(root, pick)
  if bench.source == "jhmdb":
    return pose.read_videos(root, bench.split_file, pick)
  raise ValueError(f"Unknown evals source {bench.source!r}; expected one of "
                   f"{SOURCES}.")
