"""Scores a DAVIS results folder like davis2017-evaluation (CSV and table)."""

import csv
import os

import numpy as np
from PIL import Image

from corrjax.evals import davis_data
from corrjax.evals import davis_metrics


def _read_png(path: str) -> np.ndarray:
  """int32 [H, W] ids of one result PNG (palette indices or gray values).

  As the official tool (results.py:14), palette PNGs give their indices and
  grayscale PNGs their values; a grayscale PNG holding only 0 and 255 is a
  DAVIS-2016 style binary mask and reads as object 1 (255 is never an
  object id in DAVIS).
  """
  with Image.open(path) as image:
    mode = image.mode
    ids = np.asarray(image)
  if mode not in ("P", "L", "I", "I;16", "1"):
    raise ValueError(f"{path}: result PNGs must be palette or grayscale "
                     f"images, got mode {mode}.")
  ids = ids.astype(np.int32)
  if mode == "L" and set(np.unique(ids).tolist()) == {0, 255}:
    ids = (ids > 0).astype(np.int32)
  return ids


def read_results(results_dir: str, sequence: str, frame_names,
                 shape=None) -> np.ndarray:
  """int32 [T, H, W] ids from `<results_dir>/<sequence>/<frame>.png`.

  Args:
    results_dir: folder with one sub-folder per sequence.
    sequence: sequence name.
    frame_names: frame names without extension, e.g. ['00001', '00002'].
    shape: optional (H, W) the results must have (the ground truth's).

  Returns:
    int32 [len(frame_names), H, W].

  Raises:
    FileNotFoundError: missing results folder, sequence folder or frame.
    ValueError: a result whose size differs from `shape` or from the first.
  """
  if not os.path.isdir(results_dir):
    raise FileNotFoundError(f"results folder {results_dir!r} not found.")
  folder = os.path.join(results_dir, sequence)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"no results for sequence {sequence!r}: folder "
                            f"{folder!r} not found.")
  out = []
  for name in frame_names:
    path = os.path.join(folder, f"{name}.png")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{sequence}: result frame {name}.png not "
                              f"found in {folder!r}.")
    ids = _read_png(path)
    want = tuple(shape) if shape is not None else (
        out[0].shape if out else ids.shape)
    if ids.shape != want:
      what = "ground truth" if shape is not None else "first result"
      raise ValueError(f"{sequence}/{name}.png: result size {ids.shape} "
                       f"differs from the {what}'s {want}.")
    out.append(ids)
  if not out:
    raise ValueError(f"{sequence}: no frames to read.")
  return np.stack(out)


def score_results(davis_root: str, results_dir: str, split: str = "val",
                  resolution: str = "480p",
                  sequences: list[str] | None = None) -> dict:
  """`davis_metrics.summarize` of a results folder, semi-supervised task.

  Sequences in the ImageSets order (or `sequences`, e.g. the part a partial
  run finished, in their order); ground truth from
  `<davis_root>/Annotations/<resolution>`; as the official tool, the first
  and last frames are not read, objects are 1..K with K the largest id of
  the first GT frame, void is background.

  Raises:
    FileNotFoundError: missing DAVIS files or results.
    ValueError: size mismatch, sequence shorter than 3 frames, or a result
      id above K (naming the sequence and frame; the official tool exits).
  """
  if not os.path.isdir(results_dir):
    raise FileNotFoundError(f"results folder {results_dir!r} not found.")
  per_sequence = {}
  for seq in sequences or davis_data.sequence_names(davis_root, split):
    names, gt = davis_data.read_masks(davis_root, seq, resolution)
    if len(names) < 3:
      raise ValueError(f"{seq}: {len(names)} annotated frames; the "
                       "semi-supervised evaluation needs at least 3.")
    pred = np.zeros_like(gt)
    pred[1:-1] = read_results(results_dir, seq, names[1:-1], gt.shape[1:])
    first = gt[0]
    num_objects = int(np.where(first == davis_data.VOID_LABEL, 0,
                               first).max())
    for name, ids in zip(names[1:-1], pred[1:-1]):
      if ids.max() > num_objects:
        raise ValueError(f"{seq}/{name}.png: object id {ids.max()} but the "
                         f"first ground-truth frame has {num_objects} "
                         f"object(s); ids must be in 0..{num_objects}.")
    per_sequence[seq] = davis_metrics.evaluate_semisupervised(gt, pred)
  if not per_sequence:
    raise ValueError(f"no sequences in the {split!r} ImageSets list.")
  return davis_metrics.summarize(per_sequence)


def csv_paths(out_dir: str, split: str) -> tuple[str, str]:
  """Official names: global_results-<split>.csv, per-sequence_results-..."""
  return (os.path.join(out_dir, f"global_results-{split}.csv"),
          os.path.join(out_dir, f"per-sequence_results-{split}.csv"))


def _csv_value(value) -> str:
  if isinstance(value, str):
    return value
  return "" if np.isnan(value) else "%.3f" % value  # pandas float_format.


def write_csvs(summary: dict, out_dir: str, split: str) -> tuple[str, str]:
  """Writes the two CSVs as pandas `to_csv(index=False, '%.3f')` does.

  Args:
    summary: `davis_metrics.summarize` output.
    out_dir: folder (the official tool uses the results folder).
    split: set name used in the file names.

  Returns:
    (global CSV path, per-sequence CSV path); existing files are replaced.
  """
  paths = csv_paths(out_dir, split)
  tables = _tables(summary)
  for path, (columns, rows) in zip(paths, tables):
    with open(path, "w", newline="") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(columns)
      writer.writerows([[_csv_value(v) for v in row] for row in rows])
  return paths


def _tables(summary: dict):
  g = summary["global"]
  global_table = (davis_metrics.GLOBAL_COLUMNS,
                  [[g[c] for c in davis_metrics.GLOBAL_COLUMNS]])
  seq_table = (davis_metrics.PER_OBJECT_COLUMNS,
               [[r[c] for c in davis_metrics.PER_OBJECT_COLUMNS]
                for r in summary["per_object"]])
  return global_table, seq_table


def _trim_zeros(strings: list[str]) -> list[str]:
  """pandas `_trim_zeros_float`: drop common trailing zeros, keep 'x.0'."""
  is_num = lambda s: s.lstrip("+-").replace(".", "", 1).isdigit() and (
      "." in s)
  while any(map(is_num, strings)) and all(
      s.endswith("0") for s in strings if is_num(s)):
    strings = [s[:-1] if is_num(s) else s for s in strings]
  return [s + "0" if is_num(s) and s.endswith(".") else s for s in strings]


def _format_column(values) -> list[str]:
  """One column as pandas DataFrame.to_string(index=False) formats it."""
  if values and isinstance(values[0], str):
    return list(values)
  x = np.asarray(values, np.float64)
  finite = np.abs(x[~np.isnan(x)])
  fmt = "{:.6f}"
  strings = [fmt.format(v) for v in x]
  too_long = max(len(s) for s in strings) > 12
  if ((finite < 1e-6) & (finite > 0)).any() or (
      too_long and (finite > 1e6).any()):
    fmt = "{:.6e}"
  strings = ["NaN" if np.isnan(v) else fmt.format(v) for v in x]
  return _trim_zeros(strings)


def _to_string(columns, rows) -> str:
  """pandas `DataFrame(rows, columns=columns).to_string(index=False)`.

  As pandas 3.1 prints it: numeric headers get a leading space, values none,
  every column right-justified, one space between columns.
  """
  cols = []
  for i, name in enumerate(columns):
    cells = _format_column([row[i] for row in rows])
    if not (rows and isinstance(rows[0][i], str)):
      name = " " + name
    width = max(len(name), *(len(c) for c in cells))
    cols.append([s.rjust(width) for s in [name] + cells])
  return "\n".join(" ".join(line) for line in zip(*cols))


def format_table(summary: dict, split: str = "val") -> str:
  """The tables the official evaluation_method.py prints (:62-65)."""
  (g_cols, g_rows), (s_cols, s_rows) = _tables(summary)
  return (f"--------------------------- Global results for {split} "
          "---------------------------\n"
          f"{_to_string(g_cols, g_rows)}\n"
          f"\n---------- Per sequence results for {split} ----------\n"
          f"{_to_string(s_cols, s_rows)}")
