"""corrjax.ops.torch_resize against torch.nn.functional.interpolate."""

import jax
import numpy as np
import pytest

from corrjax.ops import torch_resize

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize("in_hw,out_hw", [((16, 16), (8, 8)),
                                          ((16, 16), (30, 43)),
                                          ((7, 12), (7, 12)),
                                          ((32, 32), (4, 4)),
                                          ((9, 5), (13, 3))])
def test_matches_torch(method, in_hw, out_hw):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *in_hw, 3)).astype(np.float32)
  want = torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode=method,
      align_corners=False).permute(0, 2, 3, 1).numpy()
  got = np.asarray(torch_resize.resize(x, out_hw, method))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bicubic_is_not_jax_image_resize():
  x = np.random.default_rng(1).normal(size=(1, 8, 8, 1)).astype(np.float32)
  ours = np.asarray(torch_resize.resize(x, (13, 13), "bicubic"))
  theirs = np.asarray(jax.image.resize(x, (1, 13, 13, 1), "bicubic"))
  assert np.abs(ours - theirs).max() > 1e-3


def test_unknown_method():
  with pytest.raises(ValueError, match="unknown method"):
    torch_resize.interpolation_matrix(4, 8, "nearest")
