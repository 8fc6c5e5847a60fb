"""Reader of DAVIS-layout videos with masks (2016 binary, 2017 palette).

Layout: `<root>/JPEGImages/<resolution>/<seq>/%05d.jpg`,
`<root>/Annotations/<resolution>/<seq>/%05d.png` (resolution '480p' or
'Full-Resolution'), sequence names in `<root>/ImageSets/2017/<split>.txt` or
`<root>/ImageSets/<split>.txt`. DAVIS-2017 masks are palette PNGs whose
indices are object ids (255 = void, kept as 255 here); DAVIS-2016 masks are
0/255 grayscale, read as one object (id 1). Void pixels are treated as
background when scoring, like the official semi-supervised evaluation
(`davis_metrics.evaluate_semisupervised`; davis2017/davis.py:87-90).
"""

import glob
import os

import numpy as np
from PIL import Image

from corrjax.evals import vos

VOID_LABEL = 255


def sequence_names(root: str, split: str) -> list[str]:
  for path in (os.path.join(root, "ImageSets", "2017", f"{split}.txt"),
               os.path.join(root, "ImageSets", f"{split}.txt")):
    if os.path.isfile(path):
      with open(path) as f:
        return [line.strip() for line in f if line.strip()]
  raise FileNotFoundError(f"no ImageSets/2017/{split}.txt or "
                          f"ImageSets/{split}.txt under {root!r}.")


def read_mask(path: str) -> np.ndarray:
  """int32 [H, W] object ids of one annotation PNG (255 = void if any)."""
  with Image.open(path) as image:
    if image.mode == "P":
      return np.asarray(image).astype(np.int32)
    gray = np.asarray(image.convert("L"))
  values = set(np.unique(gray).tolist())
  if not values <= {0, 255}:
    raise ValueError(f"{path}: a non-palette mask must be binary 0/255, got "
                     f"values {sorted(values)[:8]}.")
  return (gray > 127).astype(np.int32)


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _mask_paths(root: str, name: str, resolution: str) -> list[str]:
  paths = sorted(glob.glob(
      os.path.join(root, "Annotations", resolution, name, "*.png")))
  if not paths:
    raise FileNotFoundError(f"no annotations for sequence {name!r} under "
                            f"{root}/Annotations/{resolution}.")
  return paths


def read_masks(root: str, name: str, resolution: str = "480p"
               ) -> tuple[list[str], np.ndarray]:
  """(frame names, int32 [T, H, W] ids) of all annotations of a sequence."""
  paths = _mask_paths(root, name, resolution)
  masks = [read_mask(p) for p in paths]
  for path, mask in zip(paths, masks):
    if mask.shape != masks[0].shape:
      raise ValueError(f"{name}/{_stem(path)}: mask size {mask.shape} "
                       f"differs from the first mask's {masks[0].shape}.")
  return [_stem(p) for p in paths], np.stack(masks)


def read_video(root: str, name: str, resolution: str = "480p") -> vos.Video:
  """Frames and masks of one sequence; mismatches raise one-line errors.

  Every frame must have a mask with the same name and size; the only
  exception is a sequence annotated on its first frame only (DAVIS
  test-dev/challenge), whose other masks are zeros.

  Args:
    root: DAVIS folder.
    name: sequence name.
    resolution: '480p' or 'Full-Resolution' (sub-folder name).

  Returns:
    Video with uint8 [T, H, W, 3] frames and int32 [T, H, W] ids (0 =
    background, 255 = void, scored as background).
  """
  frame_paths = sorted(glob.glob(
      os.path.join(root, "JPEGImages", resolution, name, "*.jpg")))
  if not frame_paths:
    raise FileNotFoundError(f"no frames for sequence {name!r} under "
                            f"{root}/JPEGImages/{resolution}.")
  mask_paths = _mask_paths(root, name, resolution)
  stems = [_stem(p) for p in frame_paths]
  by_stem = {_stem(p): p for p in mask_paths}
  if stems[0] not in by_stem:
    raise FileNotFoundError(f"{name}: no annotation for the first frame "
                            f"{stems[0]}.")
  extra = sorted(set(by_stem) - set(stems))
  if extra:
    raise ValueError(f"{name}: annotation {extra[0]}.png has no frame "
                     f"{extra[0]}.jpg.")
  if len(mask_paths) not in (1, len(frame_paths)):
    missing = [s for s in stems if s not in by_stem]
    raise ValueError(f"{name}: {len(frame_paths)} frames but "
                     f"{len(mask_paths)} annotations (none for frame "
                     f"{missing[0]}); expected all or only the first.")
  frames = []
  for t, path in enumerate(frame_paths):
    try:
      with Image.open(path) as image:
        frames.append(np.asarray(image.convert("RGB")))
    except (OSError, SyntaxError, ValueError) as e:  # PIL's decode errors.
      raise ValueError(f"{path}: unreadable image (frame {t} of "
                       f"{name}): {e}") from None
  first = read_mask(by_stem[stems[0]])
  masks = [read_mask(by_stem[s]) if s in by_stem else np.zeros_like(first)
           for s in stems]
  for s, m, f in zip(stems, masks, frames):
    if m.shape != f.shape[:2]:
      raise ValueError(f"{name}/{s}: mask {m.shape} and frame "
                       f"{f.shape[:2]} differ in size.")
  return vos.Video(name, np.stack(frames), np.stack(masks))
