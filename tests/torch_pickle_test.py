"""Tests for corrjax.torch_pickle against torch.load."""

import argparse
import collections
import os
import zipfile

import ml_dtypes
import numpy as np
import pytest

from corrjax import torch_pickle

torch = pytest.importorskip("torch")

FORMATS = {"zip": True, "legacy": False}


def _save(obj, path, fmt):
  torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
  return path


def _as_numpy(t):
  if t.dtype == torch.bfloat16:
    return t.float().numpy().astype(ml_dtypes.bfloat16)
  return t.numpy()


def _assert_same(ours, theirs):
  """Recursively: our arrays equal torch's tensors (values, dtype, shape)."""
  if isinstance(theirs, torch.Tensor):
    expected = _as_numpy(theirs.detach())
    assert isinstance(ours, np.ndarray)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)
    assert ours.flags.c_contiguous and ours.flags.writeable
  elif isinstance(theirs, dict):
    assert type(ours) is type(theirs) and list(ours) == list(theirs)
    for key in theirs:
      _assert_same(ours[key], theirs[key])
  elif isinstance(theirs, (list, tuple)):
    assert type(ours) is type(theirs) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
      _assert_same(a, b)
  else:
    assert ours == theirs


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensors_equal_torch_load(tmp_path, fmt):
  gen = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, 5, generator=gen)
  obj = collections.OrderedDict(
      transposed=base.permute(2, 0, 1),        # non-contiguous
      offset_view=base[1:3, 2:, 1::2],          # offset, strided
      same_storage=base[3, 0],                  # shares `base`'s storage
      scalar=torch.tensor(2.5, dtype=torch.float64),
      empty=torch.zeros(0, 3),
      half=torch.randn(3, 2, generator=gen).half().t(),
      bf16=torch.randn(5, generator=gen).bfloat16()[1:],
      int64=torch.arange(-3, 9).reshape(3, 4)[:, ::2],
      int32=torch.arange(7, dtype=torch.int32),
      int8=torch.tensor([-128, 0, 127], dtype=torch.int8),
      uint8=torch.tensor([0, 200, 255], dtype=torch.uint8),
      bool=torch.tensor([[True, False], [False, True]]).t(),
      complex=torch.randn(3, dtype=torch.complex64, generator=gen),
      param=torch.nn.Parameter(torch.randn(2, 2, generator=gen)),
  )
  if fmt == "zip":  # torch.load itself fails on legacy untyped storages.
    obj["uint16"] = torch.tensor([1, 65535], dtype=torch.uint16)
  nested = {"model": obj, "epoch": 7, "lr": 0.1, "name": "x", "raw": b"\x00",
            "list": [torch.ones(2), (1, torch.tensor([3]))],
            "opt": {"state": {0: {"momentum_buffer": base[0]}},
                    "param_groups": [{"params": [0], "lr": 0.1}]}}
  path = _save(nested, str(tmp_path / "x.pth"), fmt)
  _assert_same(torch_pickle.load(path), torch.load(path))


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_classes_are_inert_placeholders(tmp_path, fmt):
  victim = tmp_path / "victim.txt"
  victim.write_text("still here")

  class Evil:
    def __reduce__(self):
      return (os.remove, (str(victim),))

  args = argparse.Namespace(lr=0.1, arch="resnet18")
  path = _save({"args": args, "evil": Evil(), "w": torch.ones(3),
                "device": torch.device("cpu")}, str(tmp_path / "c.pth"), fmt)
  loaded = torch_pickle.load(path)
  assert victim.exists()  # os.remove was not called.
  assert isinstance(loaded["evil"], torch_pickle.Unresolved)
  assert loaded["evil"].qualname in ("posix.remove", "os.remove")
  assert isinstance(loaded["args"], torch_pickle.Unresolved)
  assert loaded["args"].qualname == "argparse.Namespace"
  assert loaded["args"].state == {"lr": 0.1, "arch": "resnet18"}
  np.testing.assert_array_equal(loaded["w"], np.ones(3, np.float32))


def test_big_endian_zip(tmp_path):
  original = {"w": torch.randn(3, 4).t(), "i": torch.arange(5)}
  path = _save(original, str(tmp_path / "le.pth"), "zip")
  swapped = str(tmp_path / "be.pth")
  with zipfile.ZipFile(path) as src, zipfile.ZipFile(swapped, "w") as dst:
    storages = {"0": np.float32, "1": np.int64}
    for name in src.namelist():
      data, key = src.read(name), name.rsplit("/", 1)[-1]
      if key == "byteorder":
        data = b"big"
      elif "/data/" in name and key in storages:  # Storage "0" is w's.
        data = np.frombuffer(data, storages[key]).byteswap().tobytes()
      dst.writestr(name, data)
  loaded = torch_pickle.load(swapped)
  np.testing.assert_array_equal(loaded["w"], original["w"].numpy())
  np.testing.assert_array_equal(loaded["i"], original["i"].numpy())
  assert loaded["w"].dtype.isnative


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    torch_pickle.load(str(tmp_path / "nope.pth"))


def test_not_a_checkpoint(tmp_path):
  text = tmp_path / "a.pth"
  text.write_text("hello")
  with pytest.raises(ValueError, match="not a torch checkpoint"):
    torch_pickle.load(str(text))
  other_zip = tmp_path / "b.pth"
  with zipfile.ZipFile(other_zip, "w") as z:
    z.writestr("readme.txt", "hi")
  with pytest.raises(ValueError, match="data.pkl"):
    torch_pickle.load(str(other_zip))


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file(tmp_path, fmt):
  path = _save({"w": torch.randn(64, 64)}, str(tmp_path / "t.pth"), fmt)
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(ValueError, match="torch checkpoint|truncated"):
    torch_pickle.load(path)
