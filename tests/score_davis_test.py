"""Tests of DAVIS results scoring, CSVs, table and the score_davis CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from corrjax import score_davis
from corrjax.evals import davis_data
from corrjax.evals import davis_metrics
from corrjax.evals import davis_results
from corrjax.evals import visualize

H, W = 24, 32


def _gt(num_frames, num_objects):
  """int32 [T, H, W]: objects as moving boxes, some void (255) pixels."""
  masks = np.zeros((num_frames, H, W), np.int32)
  for t in range(num_frames):
    for k in range(num_objects):
      y, x = 2 + 8 * k, 2 + 2 * t + 3 * k
      masks[t, y:y + 6, x:x + 9] = k + 1
    masks[t, -2:, -3:] = 255
  return masks


def make_davis(root, seqs, binary=False):
  """DAVIS-2017 layout (2016 layout when binary) with GT {name: masks}."""
  lists = os.path.join(root, "ImageSets", "" if binary else "2017")
  os.makedirs(lists, exist_ok=True)
  with open(os.path.join(lists, "val.txt"), "w") as f:
    f.write("".join(f"{name}\n" for name in seqs))
  rng = np.random.default_rng(0)
  for name, masks in seqs.items():
    for sub in ("JPEGImages", "Annotations"):
      os.makedirs(os.path.join(root, sub, "480p", name), exist_ok=True)
    for t, mask in enumerate(masks):
      frame = rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
      Image.fromarray(frame).save(
          os.path.join(root, "JPEGImages", "480p", name, f"{t:05d}.jpg"))
      path = os.path.join(root, "Annotations", "480p", name, f"{t:05d}.png")
      if binary:
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(path)
      else:
        visualize.save_label_png(path, mask)
  return root


def write_results(results, preds):
  for name, ids in preds.items():
    for t, frame in enumerate(ids):
      visualize.save_label_png(
          os.path.join(results, name, f"{t:05d}.png"), frame)
  return results


@pytest.fixture
def davis(tmp_path):
  seqs = {"cat": _gt(6, 2), "dog": _gt(5, 1)}
  return make_davis(str(tmp_path / "DAVIS"), seqs), seqs


def _predictions(seqs):
  """GT shifted by one pixel, object 2 of 'cat' dropped on frame 3."""
  preds = {n: np.roll(np.where(m == 255, 0, m), 1, axis=2)
           for n, m in seqs.items()}
  preds["cat"][3][preds["cat"][3] == 2] = 0
  return preds


def test_read_results_palette_and_grayscale(tmp_path):
  ids = _gt(3, 2)[1]
  ids[ids == 255] = 0
  visualize.save_label_png(str(tmp_path / "s" / "a.png"), ids)
  Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "s" / "b.png")
  Image.fromarray((ids > 0).astype(np.uint8) * 255).save(
      tmp_path / "s" / "c.png")
  out = davis_results.read_results(str(tmp_path), "s", ["a", "b", "c"])
  assert out.dtype == np.int32 and out.shape == (3, H, W)
  np.testing.assert_array_equal(out[0], ids)
  np.testing.assert_array_equal(out[1], ids)
  np.testing.assert_array_equal(out[2], ids > 0)


def test_perfect_results_score_one(davis, tmp_path):
  root, seqs = davis
  results = write_results(str(tmp_path / "res"),
                          {n: np.where(m == 255, 0, m)
                           for n, m in seqs.items()})
  summary = davis_results.score_results(root, results)
  g = summary["global"]
  assert g["J&F-Mean"] == g["J-Mean"] == g["F-Mean"] == 1.0
  assert g["J-Decay"] == g["F-Decay"] == 0.0
  assert [r["Sequence"] for r in summary["per_object"]] == [
      "cat_1", "cat_2", "dog_1"]


def test_csvs_match_davis_metrics(davis, tmp_path):
  root, seqs = davis
  preds = _predictions(seqs)
  results = write_results(str(tmp_path / "res"), preds)
  summary = davis_results.score_results(root, results)
  want = davis_metrics.summarize({
      n: davis_metrics.evaluate_semisupervised(seqs[n], preds[n])
      for n in ("cat", "dog")})
  assert summary == want
  assert 0.3 < want["global"]["J&F-Mean"] < 1.0
  g_path, s_path = davis_results.write_csvs(summary, results, "val")
  assert (os.path.basename(g_path), os.path.basename(s_path)) == (
      "global_results-val.csv", "per-sequence_results-val.csv")
  g = want["global"]
  with open(g_path) as f:
    assert f.read() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        + ",".join("%.3f" % g[c] for c in davis_metrics.GLOBAL_COLUMNS)
        + "\n")
  with open(s_path) as f:
    assert f.read() == "Sequence,J-Mean,F-Mean\n" + "".join(
        f"{r['Sequence']},{r['J-Mean']:.3f},{r['F-Mean']:.3f}\n"
        for r in want["per_object"])


def test_format_table_like_pandas():
  summary = {"global": dict(zip(davis_metrics.GLOBAL_COLUMNS,
                                [0.75, 0.5, 1.0, 0.125, 1.0, 1.0, -1e-17])),
             "per_object": [
                 {"Sequence": "a_1", "J-Mean": 0.5, "F-Mean": 1 / 3},
                 {"Sequence": "bmx-trees_2", "J-Mean": 1.0,
                  "F-Mean": float("nan")}]}
  # Printed by pandas 3.1.1 DataFrame.to_string(index=False), as the
  # official evaluation_method.py builds the frames.
  assert davis_results.format_table(summary, "val") == (
      "--------------------------- Global results for val "
      "---------------------------\n"
      " J&F-Mean  J-Mean  J-Recall  J-Decay  F-Mean  F-Recall       F-Decay\n"
      "     0.75     0.5       1.0    0.125     1.0       1.0 -1.000000e-17\n"
      "\n---------- Per sequence results for val ----------\n"
      "   Sequence  J-Mean   F-Mean\n"
      "        a_1     0.5 0.333333\n"
      "bmx-trees_2     1.0      NaN")


def test_run_overwrites_old_csv(davis, tmp_path, capsys):
  root, seqs = davis
  results = write_results(str(tmp_path / "res"), _predictions(seqs))
  g_path, s_path = davis_results.csv_paths(results, "val")
  for path in (g_path, s_path):
    open(path, "w").write("stale\n")
  summary = score_davis.run(root, results, "val", "480p")
  out = capsys.readouterr().out
  assert "Overwriting previous results" in out
  assert davis_results.format_table(summary, "val") in out
  with open(g_path) as f:
    assert f.read().splitlines()[1] == ",".join(
        "%.3f" % summary["global"][c] for c in davis_metrics.GLOBAL_COLUMNS)
  assert "stale" not in open(s_path).read()


def test_sequences_scores_part_of_the_set(davis, tmp_path):
  root, seqs = davis
  preds = _predictions(seqs)
  del preds["cat"]  # A partial run: only 'dog' finished.
  results = write_results(str(tmp_path / "res"), preds)
  with pytest.raises(FileNotFoundError):
    score_davis.run(root, results, "val", "480p")
  only = score_davis.run(root, results, "val", "480p", "dog")
  whole = davis_results.score_results(
      root, write_results(str(tmp_path / "all"), _predictions(seqs)))
  dog = [r for r in whole["per_object"] if r["Sequence"] == "dog_1"]
  assert only["per_object"] == dog
  listing = tmp_path / "list.txt"
  listing.write_text("dog\n")
  assert score_davis.run(root, results, "val", "480p",
                         str(listing))["per_object"] == dog
  with pytest.raises(ValueError, match="unknown videos"):
    score_davis.run(root, results, "val", "480p", "dog,cow")


def test_truncated_frame_names_file_and_frame(davis):
  root, _ = davis
  path = os.path.join(root, "JPEGImages", "480p", "dog", "00002.jpg")
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 3])
  with pytest.raises(ValueError) as info:
    davis_data.read_video(root, "dog")
  message = str(info.value)
  assert "\n" not in message
  assert path in message and "frame 2 of dog" in message


def _error(root, results):  # The one-line message of a scoring error.
  with pytest.raises((OSError, ValueError)) as info:
    davis_results.score_results(root, results)
  return str(info.value)


def test_errors(davis, tmp_path):
  root, seqs = davis
  gt = {n: np.where(m == 255, 0, m) for n, m in seqs.items()}
  res = str(tmp_path / "res")
  assert "results folder" in _error(root, res)
  write_results(res, {"cat": gt["cat"]})
  assert "no results for sequence 'dog'" in _error(root, res)
  write_results(res, gt)
  os.remove(os.path.join(res, "dog", "00002.png"))
  assert "dog: result frame 00002.png not found" in _error(root, res)
  too_many = gt["dog"].copy()
  too_many[2, 0, 0] = 2
  write_results(res, {"dog": too_many})
  msg = _error(root, res)
  assert msg.startswith("dog/00002.png: object id 2") and "1 object" in msg
  write_results(res, {"dog": gt["dog"]})
  visualize.save_label_png(os.path.join(res, "dog", "00003.png"),
                           np.zeros((H + 1, W), np.int32))
  assert "dog/00003.png: result size (25, 32) differs from the ground " \
         "truth's (24, 32)" in _error(root, res)
  # The first and last frames are not read, like the official tool.
  write_results(res, {"dog": gt["dog"]})
  os.remove(os.path.join(res, "dog", "00000.png"))
  os.remove(os.path.join(res, "dog", "00004.png"))
  assert davis_results.score_results(root, res)["global"]["J-Mean"] == 1.0


def _cli(repo, *args):
  env = dict(os.environ, PYTHONPATH=repo)
  return subprocess.run([sys.executable, "-m", "corrjax.score_davis",
                         *args], env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def test_cli(davis, tmp_path, repo_root):
  root, seqs = davis
  results = write_results(str(tmp_path / "res"), _predictions(seqs))
  args = [f"--davis_root={root}", f"--results_dir={results}"]
  proc = _cli(repo_root, *args, "--set=val")
  assert proc.returncode == 0, proc.stderr
  summary = davis_results.score_results(root, results)
  assert davis_results.format_table(summary, "val") in proc.stdout
  os.remove(os.path.join(results, "cat", "00001.png"))
  proc = _cli(repo_root, *args)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "corrjax: error: cat: result frame 00001.png not found in "
      f"{os.path.join(results, 'cat')!r}."]
  proc = _cli(repo_root, f"--results_dir={results}")
  assert proc.returncode == 1
  assert proc.stderr.strip() == "corrjax: error: --davis_root is required."


def test_davis2016_layout_binary_masks(tmp_path):
  seqs = {"one": _gt(4, 1)}
  root = make_davis(str(tmp_path / "D16"), seqs, binary=True)
  res = write_results(str(tmp_path / "res"),
                      {"one": np.where(seqs["one"] == 255, 0, seqs["one"])})
  summary = davis_results.score_results(root, res)
  assert summary["global"]["J-Mean"] < 1.0  # Binary GT: void is object 1.
  assert [r["Sequence"] for r in summary["per_object"]] == ["one_1"]


def test_real_davis2016_gt_as_results(data_root, tmp_path):
  root = os.path.join(data_root, "davis2016")
  if not os.path.isdir(root):
    pytest.skip(f"no {root}")
  names = davis_data.sequence_names(root, "val")[:2]
  sub = tmp_path / "D"
  os.makedirs(sub / "ImageSets")
  (sub / "ImageSets" / "val.txt").write_text("\n".join(names) + "\n")
  os.symlink(os.path.join(root, "Annotations"), sub / "Annotations")
  res = str(tmp_path / "res")
  for name in names:
    stems, masks = davis_data.read_masks(root, name)
    for stem, mask in zip(stems, masks):
      visualize.save_label_png(os.path.join(res, name, f"{stem}.png"), mask)
  summary = davis_results.score_results(str(sub), res)
  assert summary["global"]["J&F-Mean"] == 1.0
  assert [r["Sequence"] for r in summary["per_object"]] == [
      f"{n}_1" for n in names]
