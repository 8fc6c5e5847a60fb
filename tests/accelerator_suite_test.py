"""benchmarks/accelerator_suite.sh --tiny: every row runs (or skips) on CPU."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_tiny_suite_writes_table_and_json(tmp_path):
  env = dict(os.environ, CORRJAX_DATA=str(tmp_path / "no_data"),
             PYTHON=sys.executable)
  env.pop("OUT", None)
  proc = subprocess.run(
      ["bash", "benchmarks/accelerator_suite.sh", str(tmp_path / "out"),
       "--tiny", "--steps=2", "--warmup=1", f"--refs={tmp_path / 'refs'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "out" / "accelerator_suite.json") as f:
    rows = json.load(f)["rows"]
  assert list(rows) == ["fc_f32", "fc_bf16", "fc_ref", "crw_f32", "crw_ref",
                        "davis_prop"]
  assert not [r for r in rows.values() if "failed" in r], rows
  for name in ("fc_f32", "crw_f32"):
    assert rows[name]["steps_per_s"] > 0
    assert rows[name]["flops_per_step"] > 0
    assert rows[name]["peak_bytes"] > 0
  assert "no SFC checkout" in rows["fc_ref"]["skipped"]
  assert "no videowalk checkout" in rows["crw_ref"]["skipped"]
  assert 0 <= rows["davis_prop"]["jf"] <= 1
  table = (tmp_path / "out" / "accelerator_suite.md").read_text()
  assert table.count("\n| ") == 7  # Header row + 6 rows.
