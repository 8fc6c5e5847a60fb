"""Reader of DAVIS-layout videos with masks (2016 binary, 2017 palette).

Layout: `<root>/JPEGImages/480p/<seq>/%05d.jpg`,
`<root>/Annotations/480p/<seq>/%05d.png`, sequence names in
`<root>/ImageSets/2017/<split>.txt` or `<root>/ImageSets/<split>.txt`.
DAVIS-2017 masks are palette PNGs whose indices are object ids; DAVIS-2016
masks are 0/255 grayscale, read as one object (id 1).
"""

import glob
import os

import numpy as np
from PIL import Image

from corrjax.evals import vos


def sequence_names(root: str, split: str) -> list[str]:
  for path in (os.path.join(root, "ImageSets", "2017", f"{split}.txt"),
               os.path.join(root, "ImageSets", f"{split}.txt")):
    if os.path.isfile(path):
      with open(path) as f:
        return [line.strip() for line in f if line.strip()]
  raise FileNotFoundError(f"no ImageSets/2017/{split}.txt or "
                          f"ImageSets/{split}.txt under {root!r}.")


def read_mask(path: str) -> np.ndarray:
  """int32 [H, W] object ids of one annotation PNG."""
  with Image.open(path) as image:
    if image.mode == "P":
      return np.asarray(image).astype(np.int32)
    gray = np.asarray(image.convert("L"))
  values = set(np.unique(gray).tolist())
  if not values <= {0, 255}:
    raise ValueError(f"{path}: a non-palette mask must be binary 0/255, got "
                     f"values {sorted(values)[:8]}.")
  return (gray > 127).astype(np.int32)


def read_video(root: str, name: str, resolution: str = "480p") -> vos.Video:
  """Frames and masks of one sequence; mismatches raise one-line errors."""
  frame_paths = sorted(glob.glob(
      os.path.join(root, "JPEGImages", resolution, name, "*.jpg")))
  mask_paths = sorted(glob.glob(
      os.path.join(root, "Annotations", resolution, name, "*.png")))
  if not frame_paths:
    raise FileNotFoundError(f"no frames for sequence {name!r} under "
                            f"{root}/JPEGImages/{resolution}.")
  if not mask_paths:
    raise FileNotFoundError(f"no annotations for sequence {name!r} under "
                            f"{root}/Annotations/{resolution}.")
  stems = [os.path.splitext(os.path.basename(p))[0] for p in frame_paths]
  by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in mask_paths}
  if stems[0] not in by_stem:
    raise FileNotFoundError(f"{name}: no annotation for the first frame "
                            f"{stems[0]}.")
  frames = []
  for path in frame_paths:
    with Image.open(path) as image:
      frames.append(np.asarray(image.convert("RGB")))
  first = read_mask(by_stem[stems[0]])
  masks = [read_mask(by_stem[s]) if s in by_stem else np.zeros_like(first)
           for s in stems]
  for s, m, f in zip(stems, masks, frames):
    if m.shape != f.shape[:2]:
      raise ValueError(f"{name}/{s}: mask {m.shape} and frame "
                       f"{f.shape[:2]} differ in size.")
  return vos.Video(name, np.stack(frames), np.stack(masks))
