"""Label maps to and from feature resolution (videowalk vos.py, cv2)."""

import numpy as np
import pytest

from corrjax.evals import labels


@pytest.mark.parametrize("src,dst", [((480, 854), (60, 107)),
                                     ((37, 50), (5, 7)),
                                     ((6, 9), (24, 30)),
                                     ((64, 64), (64, 64))])
def test_resize_matches_opencv_inter_linear(src, dst):
  cv2 = pytest.importorskip("cv2")
  x = np.random.default_rng(0).random(src + (3,)).astype(np.float32)
  # The reference passes the size positionally, so the interpolation is
  # OpenCV's default INTER_LINEAR (videowalk code/data/vos.py:225-263).
  expected = cv2.resize(x, (dst[1], dst[0]))
  np.testing.assert_allclose(labels.resize_bilinear(x, *dst), expected,
                             atol=1e-5)


def test_downsample_is_a_soft_one_hot_on_the_ceil_grid():
  ids = np.zeros((20, 30), np.int64)
  ids[:, 15:] = 2
  soft = labels.downsample_labels(ids, 3)
  assert soft.shape == (3, 4, 3)
  np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)
  assert np.all(soft[..., 1] == 0)
  assert soft[0, 0, 0] == 1 and soft[0, -1, 2] == 1


def test_upsample_argmax_restores_a_blocky_map():
  soft = np.zeros((2, 2, 2), np.float32)
  soft[:, 1, 1] = soft[:, 0, 0] = 1
  out = labels.upsample_argmax(soft, 16, 16)
  assert out.shape == (16, 16)
  assert np.all(out[:, :7] == 0) and np.all(out[:, 9:] == 1)


def test_out_of_range_ids_are_rejected():
  with pytest.raises(ValueError, match="label ids"):
    labels.one_hot(np.array([[0, 3]]), 3)


@pytest.mark.parametrize("src,dst", [((480, 854), (320, 320)),
                                     ((240, 320), (560, 560)),
                                     ((7, 5), (16, 3)), ((33, 65), (8, 9))])
def test_resize_nearest_matches_opencv(src, dst):
  cv2 = pytest.importorskip("cv2")
  x = np.random.default_rng(1).integers(0, 5, src).astype(np.uint8)
  expected = cv2.resize(x, (dst[1], dst[0]), interpolation=cv2.INTER_NEAREST)
  np.testing.assert_array_equal(labels.resize_nearest(x, *dst), expected)
