"""Scores DAVIS results folders (semi-supervised J&F) like the official tool.

Usage:

  python -m corrjax.score_davis --davis_root=/data/DAVIS \
      --results_dir=/out/davis_results [--set=val] [--resolution=480p] \
      [--sequences=blackswan,bmx-trees | --sequences=/path/list.txt]

`<results_dir>/<sequence>/<frame>.png` are palette (or grayscale) PNGs of
object ids, one per annotated frame (the first and last are not read). As
davisvideochallenge/davis2017-evaluation's `evaluation_method.py --task
semi-supervised`, it writes `global_results-<set>.csv` and
`per-sequence_results-<set>.csv` into the results folder and prints the same
tables. Unlike it, an existing CSV is never reused: the results are always
recomputed and the old files overwritten (a line says so). DAVIS-2016
folders (binary masks, ImageSets/<set>.txt) work too. Bad input exits with
one line `corrjax: error: ...` and status 1.
"""

import os
import sys
import time

from absl import app
from absl import flags

from corrjax import cli_flags

from corrjax.evals import benchmarks
from corrjax.evals import davis_data
from corrjax.evals import davis_results

_DAVIS_ROOT = flags.DEFINE_string(
    "davis_root", None, "DAVIS folder with JPEGImages, Annotations and "
    "ImageSets.")
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Folder with one sub-folder of PNGs per sequence; "
    "the CSVs are written here.")
_SET = flags.DEFINE_string("set", "val", "Subset (ImageSets list) to score.")
_RESOLUTION = flags.DEFINE_string(
    "resolution", "480p", "Annotations sub-folder: 480p or Full-Resolution.")
_SEQUENCES = flags.DEFINE_string(
    "sequences", "", "Score only these: comma-separated names, or a text "
    "file with one name per line (default: the whole --set list).")


def run(davis_root: str, results_dir: str, split: str, resolution: str,
        sequences: str = "") -> dict:
  """Scores, writes the CSVs and prints the tables; returns the summary."""
  start = time.time()
  if not os.path.isdir(davis_root):
    raise FileNotFoundError(f"DAVIS folder {davis_root!r} not found.")
  if not os.path.isdir(results_dir):
    raise FileNotFoundError(f"results folder {results_dir!r} not found.")
  names = None
  if sequences:
    names = benchmarks.select(davis_data.sequence_names(davis_root, split),
                              sequences)
  print("Evaluating sequences for the semi-supervised task...")
  summary = davis_results.score_results(davis_root, results_dir, split,
                                        resolution, names)
  old = [p for p in davis_results.csv_paths(results_dir, split)
         if os.path.exists(p)]
  if old:
    print(f"Overwriting previous results in {', '.join(old)} (recomputed, "
          "not reused).")
  global_path, seq_path = davis_results.write_csvs(summary, results_dir,
                                                   split)
  print(f"Global results saved in {global_path}")
  print(f"Per-sequence results saved in {seq_path}")
  print(davis_results.format_table(summary, split))
  print(f"\nTotal time: {time.time() - start:.1f} s")
  return summary


def main(argv):
  if len(argv) > 1:
    sys.exit(f"corrjax: error: unexpected arguments {' '.join(argv[1:])}.")
  for flag in (_DAVIS_ROOT, _RESULTS_DIR):
    if not flag.value:
      sys.exit(f"corrjax: error: --{flag.name} is required.")
  try:
    run(_DAVIS_ROOT.value, _RESULTS_DIR.value, _SET.value, _RESOLUTION.value,
        _SEQUENCES.value)
  except (OSError, ValueError) as e:
    sys.exit(f"corrjax: error: {e}")



if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_or_exit)
