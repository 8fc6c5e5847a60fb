"""Video files (mp4, ...) as random-access frame sources, decoded by PyAV.

A video is indexed once: its packets are demuxed (not decoded) to list the
presentation timestamps (pts) of its frames, as torchvision's `VideoClips`
does for CRW's Kinetics training (videowalk `code/data/kinetics.py:53-59`;
torchvision `io.read_video_timestamps`). Frame k is the k-th frame in pts
order, and `fps` is the stream's average rate (torchvision's `video_fps`).
Reading frames seeks to the keyframe before the first wanted frame and
decodes forward only as far as the last one, so a clip costs one seek and a
GOP's worth of decoding instead of the whole file.

Indexing a large set (Kinetics-400: ~240k files) takes minutes, so the index
can be cached in an .npz file, reused while each file's size and mtime are
unchanged. It keeps 8 bytes per frame in memory (~0.6 GB for Kinetics-400
train).
"""

import concurrent.futures
import dataclasses
import glob
import logging
import os

import av
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclasses.dataclass(frozen=True)
class VideoIndex:
  """What a clip sampler needs to know about one video file.

  Attributes:
    fps: frames per second of the video stream (0 if unreadable).
    pts: int64 [F], sorted presentation timestamps of its F frames in the
      stream's time base (empty if unreadable).
    error: why the file could not be indexed, or "" if it could.
  """
  fps: float
  pts: np.ndarray
  error: str = ""


def index_video(path: str) -> VideoIndex:
  """Lists the frames of `path` by demuxing; never raises on a bad file."""
  try:
    with av.open(path, metadata_errors="ignore") as container:
      if not container.streams.video:
        return VideoIndex(0.0, np.zeros([0], np.int64), "no video stream")
      stream = container.streams.video[0]
      pts = [p.pts for p in container.demux(stream) if p.pts is not None]
      fps = float(stream.average_rate or 0.0)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    return VideoIndex(0.0, np.zeros([0], np.int64), str(e) or type(e).__name__)
  if fps <= 0:
    return VideoIndex(0.0, np.zeros([0], np.int64), "unknown frame rate")
  return VideoIndex(fps, np.sort(np.asarray(pts, np.int64)))


def read_frames(path: str, pts: np.ndarray, frames) -> np.ndarray:
  """Decodes frames `frames` (indices into `pts`) of the video at `path`.

  Args:
    path: the video file.
    pts: int64 [F] from `index_video(path).pts`.
    frames: K frame indices in [0, F), any order, repeats allowed.

  Returns:
    uint8 [K, H, W, 3] RGB frames, in the order of `frames`.

  Raises:
    OSError: if the file cannot be decoded or a wanted frame is missing.
  """
  frames = [int(k) for k in frames]
  wanted = {int(pts[k]) for k in frames}
  first, last = min(wanted), max(wanted)
  decoded = {}
  try:
    with av.open(path, metadata_errors="ignore") as container:
      stream = container.streams.video[0]
      container.seek(first, stream=stream, backward=True, any_frame=False)
      for frame in container.decode(stream):
        if frame.pts in wanted:
          decoded[frame.pts] = frame.to_ndarray(format="rgb24")
        if frame.pts is not None and frame.pts >= last:
          break
  except (av.error.FFmpegError, ValueError) as e:
    raise OSError(f"cannot decode {path}: {e}") from e
  if len(decoded) < len(wanted):
    missing = sorted(wanted - set(decoded))
    raise OSError(f"{path}: frames with pts {missing[:4]} not decoded.")
  return np.stack([decoded[int(pts[k])] for k in frames])


def write_video(path: str, frames: np.ndarray, fps: int = 30,
                keyframe_interval: int = 8) -> None:
  """Writes uint8 [T, H, W, 3] RGB frames losslessly (H.264 RGB, qp 0).

  Decoding gives the frames back exactly; a keyframe every
  `keyframe_interval` frames makes readers seek.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                     f"{frames.shape}.")
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264rgb", rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "rgb24"
    k = keyframe_interval
    stream.options = {"qp": "0", "x264-params":
                      f"keyint={k}:min-keyint={k}:scenecut=0"}
    for frame in frames:
      container.mux(stream.encode(
          av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


def _file_stamp(path: str) -> tuple[int, int]:
  stat = os.stat(path)
  return stat.st_size, stat.st_mtime_ns


def _load_cache(cache_path: str) -> dict[str, tuple]:
  """path -> (size, mtime_ns, VideoIndex) from an .npz written by `_save`."""
  if not cache_path or not os.path.exists(cache_path):
    return {}
  with np.load(cache_path, allow_pickle=False) as f:
    ends = np.cumsum(f["counts"])
    entries = {}
    for i, path in enumerate(f["paths"].tolist()):
      pts = f["pts"][ends[i] - f["counts"][i]:ends[i]]
      index = VideoIndex(float(f["fps"][i]), pts, str(f["errors"][i]))
      entries[path] = (int(f["sizes"][i]), int(f["mtimes"][i]), index)
  return entries


def _save_cache(cache_path: str, paths, stamps, indices) -> None:
  """Writes the index atomically (a concurrent reader sees old or new)."""
  os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
  tmp = f"{cache_path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, paths=np.asarray(paths, str),
           sizes=np.asarray([s[0] for s in stamps], np.int64),
           mtimes=np.asarray([s[1] for s in stamps], np.int64),
           fps=np.asarray([x.fps for x in indices], np.float64),
           counts=np.asarray([len(x.pts) for x in indices], np.int64),
           errors=np.asarray([x.error for x in indices], str),
           pts=np.concatenate([np.zeros([0], np.int64)]
                              + [x.pts for x in indices]))
  os.replace(tmp, cache_path)


class VideoFiles:
  """The video files under a folder, in sorted path order.

  Args:
    root: folder searched.
    pattern: glob relative to `root` ('**' allowed), e.g. '**/*.mp4' for
      Kinetics' `train_256/<class>/<id>.mp4`.
    cache_path: .npz file caching the index ('' for none).
    num_threads: parallel indexing threads.

  Attributes:
    paths: the files, sorted.
    fps: float64 [V] frame rates (0 for unreadable files).
    errors: {video: message} for the files that could not be indexed.
  """

  def __init__(self, root: str, pattern: str = "**/*.mp4", *,
               cache_path: str = "", num_threads: int = 8):
    if not root or not os.path.isdir(root):
      raise FileNotFoundError(f"video folder {root!r} does not exist.")
    paths = glob.glob(os.path.join(root, pattern), recursive=True)
    self.paths = sorted(p for p in paths if os.path.isfile(p)
                        and p.lower().endswith(VIDEO_EXTENSIONS))
    if not self.paths:
      raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)})"
                              f" match {pattern!r} under {root!r}.")
    indices = self._index(cache_path, num_threads)
    self.fps = np.asarray([x.fps for x in indices], np.float64)
    self.errors = {v: x.error for v, x in enumerate(indices) if x.error}
    counts = np.asarray([len(x.pts) for x in indices], np.int64)
    self._starts = np.concatenate([[0], np.cumsum(counts)])
    self._pts = np.concatenate([np.zeros([0], np.int64)]
                               + [x.pts for x in indices])

  def _index(self, cache_path: str, num_threads: int) -> list[VideoIndex]:
    cached = _load_cache(cache_path)
    stamps = [_file_stamp(p) for p in self.paths]
    todo = [i for i, (p, s) in enumerate(zip(self.paths, stamps))
            if cached.get(p, (None, None))[:2] != s]
    logging.info("indexing %d of %d video files (%d cached)", len(todo),
                 len(self.paths), len(self.paths) - len(todo))
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      fresh = dict(zip(todo, pool.map(index_video,
                                      [self.paths[i] for i in todo])))
    indices = [fresh[i] if i in fresh else cached[p][2]
               for i, p in enumerate(self.paths)]
    if cache_path and (todo or len(cached) != len(self.paths)):
      _save_cache(cache_path, self.paths, stamps, indices)
    return indices

  def __len__(self) -> int:
    return len(self.paths)

  def describe(self, video: int) -> str:
    return self.paths[video]

  def num_frames(self, video: int) -> int:
    return int(self._starts[video + 1] - self._starts[video])

  def load(self, video: int, frames) -> np.ndarray:
    """uint8 [K, H, W, 3] frames `frames` of `video`; OSError if corrupt."""
    pts = self._pts[self._starts[video]:self._starts[video + 1]]
    return read_frames(self.paths[video], pts, frames)
