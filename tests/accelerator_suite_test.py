"""benchmarks/accelerator_suite.py --tiny: every kind of row runs (or skips)
on CPU, in this process (the .sh wrapper only adds the environment)."""

import importlib.util
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _suite():
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  spec = importlib.util.spec_from_file_location(
      "accelerator_suite", os.path.join(REPO, "benchmarks",
                                        "accelerator_suite.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# Every kind of row once: a float32 and a bfloat16 train row (of two
# methods: fc_bf16 and crw_f32 are the same code with the other config),
# a train row of a method with its own config and pipeline (LIIR; Mask-VOS
# is the same code), both reference rows (skipped without checkouts), the
# k-means row, the DAVIS row.
ROWS = ("fc_f32", "fc_ref", "crw_bf16", "crw_ref", "liir_f32", "kmeans",
        "davis_prop")


@pytest.mark.slow
def test_tiny_suite_writes_table_and_json(tmp_path):
  suite = _suite()
  assert set(ROWS) | {"fc_bf16", "crw_f32", "mask_vos_f32"} == set(
      suite.ROWS)
  suite.main(["--tiny", "--in_process", "--steps=2", "--warmup=1",
              f"--rows={','.join(ROWS)}",
              f"--out_dir={tmp_path / 'out'}", f"--refs={tmp_path / 'refs'}",
              f"--davis_root={tmp_path / 'no_data'}"])
  with open(tmp_path / "out" / "accelerator_suite.json") as f:
    rows = json.load(f)["rows"]
  assert tuple(rows) == ROWS
  assert not [r for r in rows.values() if "failed" in r], rows
  assert rows["kmeans"]["ms_per_video"] > 0
  for name in ("fc_f32", "crw_bf16", "liir_f32"):
    assert rows[name]["steps_per_s"] > 0, name
    assert rows[name]["flops_per_step"] > 0, name
    assert rows[name]["peak_bytes"] > 0, name
  assert "no SFC checkout" in rows["fc_ref"]["skipped"]
  assert "no videowalk checkout" in rows["crw_ref"]["skipped"]
  assert 0 <= rows["davis_prop"]["jf"] <= 1
  table = (tmp_path / "out" / "accelerator_suite.md").read_text()
  assert table.count("\n| ") == 1 + len(ROWS)  # Header row + rows.


def test_shell_wrapper_names_the_python_driver():
  with open(os.path.join(REPO, "benchmarks", "accelerator_suite.sh")) as f:
    text = f.read()
  assert 'accelerator_suite.py" --out_dir="$out" "$@"' in text
