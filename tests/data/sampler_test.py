"""Tests for corrjax.data.sampler: step -> example indices, bad items."""

import logging

import jax
import numpy as np
import pytest

from corrjax.data import sampler


def _indices(**kw):
  batches = sampler.host_batches(
      lambda e: {"e": np.int64(e)}, num_threads=2, prefetch=1, **kw)
  return [b["e"].tolist() for b in batches]


def test_first_batch_is_that_of_step_start_step_plus_one():
  fresh = _indices(global_batch_size=3, start_step=0, total_steps=3)
  assert fresh == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
  assert _indices(global_batch_size=3, start_step=2,
                  total_steps=3) == fresh[2:]


def test_hosts_take_consecutive_slices(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert _indices(global_batch_size=4, start_step=1,
                  total_steps=3) == [[6, 7], [10, 11]]
  with pytest.raises(ValueError, match="not divisible by the 2 hosts"):
    _indices(global_batch_size=3, start_step=0, total_steps=1)


def test_no_grain_warning_when_prefetch_is_below_threads(caplog):
  with caplog.at_level(logging.WARNING):
    _indices(global_batch_size=2, start_step=0, total_steps=1)
  assert "smaller than num_threads" not in caplog.text


def test_bad_items_warn_once_with_the_count(caplog):
  bad = sampler.BadItems()
  with caplog.at_level(logging.WARNING):
    for key in (3, 5, 3):
      bad.record(key, "skipping %s; %d so far", f"item{key}")
  assert bad.keys() == {3, 5} and len(bad) == 2
  assert caplog.text.count("skipping") == 2
  assert "skipping item5; 2 so far" in caplog.text
