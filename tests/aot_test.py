"""corrjax.aot: batch shapes, HLO collectives, TPU compilation (libtpu)."""

import importlib.util
import os

import jax
import numpy as np
import pytest

from corrjax import aot
from corrjax import config_defaults
from corrjax import methods

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None

@pytest.mark.parametrize("name", ["fc", "crw", "moco", "liir", "mask_vos"])
def test_batch_spec_matches_the_pipeline(name):
  config = config_defaults.load(os.path.join(REPO, f"configs/{name}.py:smoke"))
  batches, _ = methods.get(config.method).make_batches(config, start_step=0)
  batch = next(batches)
  spec = aot.batch_spec(config)
  assert sorted(spec) == sorted(batch)
  for key, value in batch.items():
    assert (spec[key].shape, spec[key].dtype) == (value.shape, value.dtype)


def test_collectives_sums_result_bytes():
  hlo = "\n".join([
      "  %all-reduce.1 = (f32[8]{0:T(128)}, /*index=1*/bf16[2,4]{1,0}) "
      "all-reduce(%a, %b), channel_id=1",
      "  %ag = (f32[4]{0}, f32[16]{0}) all-gather-start(%c), dimensions={0}, "
      "channel_id=7",
      # Two clones of one all-gather (one channel id), as XLA's TPU
      # async-collective fusion leaves them.
      "  %ag.2 = f32[16]{0} all-gather(%p0), channel_id=9, metadata={}",
      "  %ag.3 = f32[16]{0} all-gather(%p1), channel_id=9, metadata={}",
      "  %x = f32[3]{0} add(%all-reduce.1, %y)",
      "  ROOT %ar = u8[10]{0} all-reduce-start(%d)"])
  found = aot.collectives(hlo)
  assert found["all-reduce"] == {"count": 2, "bytes": 8 * 4 + 8 * 2 + 10,
                                 "channels": 2,
                                 "channel_bytes": 8 * 4 + 8 * 2 + 10}
  assert found["all-gather"] == {"count": 3, "bytes": 3 * 16 * 4,
                                 "channels": 2, "channel_bytes": 2 * 16 * 4}


def test_batch_that_does_not_divide_is_one_line_error():
  config = config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))
  config.data.batch_size = 6
  with pytest.raises(aot.AotError, match=r"global batch 6 .* 4 chips.*=8"):
    aot.compile_train_step(config, jax.devices())


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu: pip install "
                    "-e .[tpu]")
def test_smallest_fc_step_compiles_for_v5e_2x2(tmp_path):
  """The FC :smoke step (4 crops of 32 px: one per chip) compiled by libtpu
  for 4 v5e chips, in this process, and its report line."""
  config = config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))
  config.data.update(batch_size=4, crop_size=32)
  r = aot.analyse(config, "v5e:2x2")
  assert (r["chips"], r["device_kind"], r["batch_per_chip"]) == (
      4, "TPU v5 lite", 1)
  assert 0 < r["total_bytes"] < r["hbm_bytes"]
  assert r["flops_per_chip"] > 0
  # Replicated state: gradients and BN statistics are all-reduced.
  assert r["collectives"]["all-reduce"]["bytes"] > 0
  assert np.isclose(r["opt_state_bytes"], 2 * r["params_bytes"], rtol=0.2)
  assert "per chip:" in aot.format_report(r)


def test_table_row_has_one_cell_per_column():
  r = dict(config="moco", sharding_rules=[["extra/queue", "('data', None)"]],
           topology="v5e:4x4", num_slices=2, chips=32, global_batch=256,
           batch_per_chip=8, params_bytes=2**20, target_bytes=2**20,
           opt_state_bytes=2**20, extra_bytes=0, batch_bytes=2**20,
           temp_bytes=2**30, total_bytes=2**31, hbm_bytes=16 * 2**30,
           flops_per_chip=1e12, step_s_at_mfu=0.0127, mfu=0.4,
           lower_only=False,
           collectives={"all-reduce": {"count": 3, "bytes": 2**21},
                        "all-gather": {"count": 1, "bytes": 2**20}})
  row = aot.table_row(r)
  assert row.count("|") == aot.TABLE_HEADER.splitlines()[0].count("|")
  assert "moco + rules | v5e:4x4 x2 | 32 | 256 (8) | 3.0 |" in row
  assert "| 2.00 / 16 | 1.000 | 2.0 | 1.0 | 12.7 (40%) |" in row
  r.update(lower_only=True, temp_bytes=None, total_bytes=None,
           collectives=None)
  assert "| - | not compiled / 16 | 1.000 | - | - | 12.7 (40%) |" in (
      aot.table_row(r))


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu: pip install "
                    "-e .[tpu]")
def test_lower_only_gives_flops_and_state_bytes_without_compiling():
  config = config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))
  r = aot.analyse(config, "v5e:2x2", lower_only=True)
  assert r["chips"] == 4 and r["total_bytes"] is None
  assert r["flops_per_chip"] > 0 and r["step_s_at_mfu"] > 0
  assert r["opt_state_bytes"] > r["params_bytes"] > 0
  assert r["batch_bytes"] == 2 * 2 * 64 * 64 * 3 + 2 * 2 * 4 * 4
