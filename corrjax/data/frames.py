"""Random-access sources of single video frames (uint8 RGB)."""

import glob
import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ArrayFrames:
  """Frames held in memory (the embedded synthetic dataset).

  Args:
    frames: uint8 [N, H, W, 3].
  """

  def __init__(self, frames: np.ndarray):
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"frames must be uint8 [N, H, W, 3], got "
                       f"{frames.dtype} {frames.shape}.")
    if not len(frames):
      raise ValueError("ArrayFrames got no frames.")
    self._frames = frames

  def __len__(self) -> int:
    return len(self._frames)

  def describe(self, index: int) -> str:
    return f"in-memory frame {index}"

  def load(self, index: int) -> np.ndarray:
    return self._frames[index]


class ImageFolderFrames:
  """Every image under a folder tree, in sorted path order.

  Takes DAVIS (`JPEGImages/<res>/<seq>/*.jpg`), YouTube-VOS
  (`train_all_frames/JPEGImages/<video>/*.jpg`) or any tree of JPEG/PNG
  frames; `pattern` (a glob relative to `root`, '**' allowed) narrows it,
  e.g. 'JPEGImages/240p/*/*.jpg'.
  """

  def __init__(self, root: str, pattern: str = "**/*"):
    if not root or not os.path.isdir(root):
      raise FileNotFoundError(f"data folder {root!r} does not exist.")
    paths = glob.glob(os.path.join(root, pattern), recursive=True)
    self.paths = sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS)
                        and os.path.isfile(p))
    if not self.paths:
      raise FileNotFoundError(
          f"no .jpg/.jpeg/.png frames match {pattern!r} under {root!r}.")

  def __len__(self) -> int:
    return len(self.paths)

  def describe(self, index: int) -> str:
    return self.paths[index]

  def load(self, index: int) -> np.ndarray:
    """uint8 [H, W, 3]; raises OSError (or a PIL error) on unreadable files."""
    with Image.open(self.paths[index]) as image:
      return np.asarray(image.convert("RGB"))
