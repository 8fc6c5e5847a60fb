"""Tests for corrjax.evals.davis_metrics against the official DAVIS tool.

The fixture testdata/davis_metrics_fixture.npz was produced by a script kept
outside the repo (it imports the reference code), run in a separate venv with
numpy 2.4.6, opencv-python-headless 5.0.0 and scikit-image 0.26.0, importing
davisvideochallenge/davis2017-evaluation at commit
ac7c43fca936f9722837b7fbd337d284ba37004b:

* `<case>_{gt,seg,void}`: bool stacks [N, H, W] for H x W in 17x23, 48x64,
  1x7, 7x1, 5x5, 120x160 (random Gaussian blobs, shifted/eroded/dilated
  copies, complements, empty and full masks, single pixels at corners and
  centre, half planes and last row/column, salt noise) and two real pairs from
  DAVIS-2016 blackswan/00010.png (4x downsampled to 120x214; a 96x128
  full-resolution crop at y=200, x=400) against shifted (3, 5), eroded (3 it.)
  and dilated (1 it.) copies; void masks are random or blob shaped.
* `<case>_j`, `<case>_j_void`: `davis2017.metrics.db_eval_iou(gt, seg[, void])`.
* `<case>_f`, `<case>_f_void`: [len(bound_ths), N] from
  `davis2017.metrics.db_eval_boundary(gt, seg[, void], bound_th=th)` for
  bound_ths = (0.008, 0.05, 0.1, 1, 2, 3, 1.5) (2-D calls checked equal).
* `stats_x_<i>`, `stats_out_<i>`: `davis2017.utils.db_statistics(x)` for random
  vectors of lengths 1..600 with NaNs (one all-NaN; n >= 256 hits the uint8
  quirk).
* `seq_<name>_{gt,pred}`: uint8 label maps [T, H, W] written as indexed PNGs
  into a temporary DAVIS tree; `seq_<name>_{J,F}` are from
  `DAVISEvaluation._evaluate_semisupervised` fed exactly as in
  evaluation.py:83-90; `global` and `per_object_*` are from
  `DAVISEvaluation.evaluate` combined as in evaluation_method.py:43-45, and
  `global_csv` / `per_object_csv` are the CSVs written by running
  evaluation_method.py itself.
"""

import os

import numpy as np
import pytest

from corrjax.evals import davis_metrics as dm

_FIXTURE = os.path.join(os.path.dirname(__file__), 'testdata',
                        'davis_metrics_fixture.npz')


@pytest.fixture(scope='module')
def ref():
  with np.load(_FIXTURE) as data:
    return dict(data)


def test_region_similarity_matches_reference(ref):
  for name in ref['case_names']:
    gt, seg, void = (ref[f'{name}_{k}'] for k in ('gt', 'seg', 'void'))
    np.testing.assert_array_equal(dm.region_similarity(gt, seg),
                                  ref[f'{name}_j'])
    np.testing.assert_array_equal(dm.region_similarity(gt, seg, void),
                                  ref[f'{name}_j_void'])


def test_boundary_measure_matches_reference(ref):
  for name in ref['case_names']:
    gt, seg, void = (ref[f'{name}_{k}'] for k in ('gt', 'seg', 'void'))
    for i, th in enumerate(ref['bound_ths']):
      np.testing.assert_array_equal(
          dm.boundary_measure(gt, seg, bound_th=th), ref[f'{name}_f'][i],
          err_msg=f'{name} bound_th={th}')
      np.testing.assert_array_equal(
          dm.boundary_measure(gt, seg, void, bound_th=th),
          ref[f'{name}_f_void'][i], err_msg=f'{name} void bound_th={th}')


def test_single_frame_and_leading_dims(ref):
  gt, seg = ref['rand_17x23_gt'], ref['rand_17x23_seg']
  assert dm.region_similarity(gt[0], seg[0]).shape == ()
  assert float(dm.boundary_measure(gt[0], seg[0])) == ref['rand_17x23_f'][0, 0]
  f = dm.boundary_measure(gt[:6].reshape(2, 3, 17, 23),
                          seg[:6].reshape(2, 3, 17, 23))
  np.testing.assert_array_equal(f, ref['rand_17x23_f'][0, :6].reshape(2, 3))


def test_statistics_matches_reference(ref):
  for i in range(int(ref['stats_count'])):
    np.testing.assert_array_equal(dm.statistics(ref[f'stats_x_{i}']),
                                  ref[f'stats_out_{i}'])


def test_statistics_known_values():
  mean, recall, decay = dm.statistics([1.0, 1.0, np.nan, 0.0, 0.0])
  assert (mean, recall, decay) == (0.5, 0.4, 1.0)  # NaN fails the recall
  assert np.isnan(dm.statistics(np.ones(256))[2])  # uint8 wrap quirk


def _square(h, w, y, x, size):
  m = np.zeros((h, w), bool)
  m[y:y + size, x:x + size] = True
  return m


def test_known_answers():
  a = _square(40, 40, 10, 10, 4)
  far = _square(40, 40, 30, 30, 4)
  empty = np.zeros((40, 40), bool)
  full = np.ones((40, 40), bool)
  assert dm.region_similarity(a, a) == 1 and dm.boundary_measure(a, a) == 1
  assert dm.region_similarity(a, far) == 0 and dm.boundary_measure(a, far) == 0
  assert dm.region_similarity(empty, empty) == 1
  assert dm.boundary_measure(empty, empty) == 1  # P = R = 1
  assert dm.boundary_measure(a, empty) == 0  # no predicted boundary: P=1, R=0
  assert dm.boundary_measure(empty, a) == 0  # no GT boundary: P=0, R=1
  # A full-frame mask has no boundary in _seg2bmap, so it "matches" empty.
  assert dm.region_similarity(full, empty) == 0
  assert dm.boundary_measure(full, empty) == 1
  # Extra far blob: R = 1, P = 1/2 -> F = 2/3; J = 16/32.
  assert dm.region_similarity(a, a | far) == 0.5
  assert dm.boundary_measure(a, a | far) == pytest.approx(2 / 3, abs=1e-15)
  # Differences inside the void region are ignored.
  assert dm.region_similarity(a, a | far, void_pixels=far) == 1


def test_shape_mismatch_raises():
  with pytest.raises(ValueError):
    dm.region_similarity(np.zeros((4, 5)), np.zeros((5, 4)))
  with pytest.raises(ValueError):
    dm.boundary_measure(np.zeros((4, 5)), np.zeros((4, 5)), np.zeros((4, 4)))


def test_evaluate_semisupervised_matches_reference(ref):
  for name in ref['seq_names']:
    res = dm.evaluate_semisupervised(ref[f'seq_{name}_gt'],
                                     ref[f'seq_{name}_pred'])
    np.testing.assert_array_equal(res['J'], ref[f'seq_{name}_J'])
    np.testing.assert_array_equal(res['F'], ref[f'seq_{name}_F'])


def test_evaluate_semisupervised_frames_ids_and_void():
  gt = np.zeros((5, 16, 16), np.uint8)
  gt[:, 2:8, 2:8] = 1
  gt[:, 9:14, 9:14] = 2
  pred = gt.copy()
  pred[0] = 7  # frames 0 and T-1 are neither scored nor checked
  pred[-1] = 0
  res = dm.evaluate_semisupervised(gt, pred)
  assert res['J'].shape == res['F'].shape == (2, 3)
  np.testing.assert_array_equal(res['J'], 1.0)
  np.testing.assert_array_equal(res['F'], 1.0)
  pred[2, 0, 0] = 3
  with pytest.raises(ValueError, match='2 objects'):
    dm.evaluate_semisupervised(gt, pred)
  # GT void (255) is background: predicting it costs J.
  pred[2, 0, 0] = 0
  gt[:, 0:2, 2:8] = 255
  pred[:, 0:2, 2:8] = 1
  res = dm.evaluate_semisupervised(gt, pred)
  np.testing.assert_allclose(res['J'][0], 36 / 48)
  # An object missing from pred scores J = F = 0.
  pred[pred == 2] = 0
  res = dm.evaluate_semisupervised(gt, pred)
  np.testing.assert_array_equal(res['J'][1], 0.0)
  np.testing.assert_array_equal(res['F'][1], 0.0)
  with pytest.raises(ValueError):
    dm.evaluate_semisupervised(gt[:2], pred[:2])


def test_summarize_matches_reference(ref):
  per_seq = {str(n): {'J': ref[f'seq_{n}_J'], 'F': ref[f'seq_{n}_F']}
             for n in ref['seq_names']}
  out = dm.summarize(per_seq)
  assert tuple(out['global']) == dm.GLOBAL_COLUMNS
  np.testing.assert_array_equal(list(out['global'].values()), ref['global'])
  assert [r['Sequence'] for r in out['per_object']] == list(
      ref['per_object_names'])
  np.testing.assert_array_equal(
      [[r['J-Mean'], r['F-Mean']] for r in out['per_object']],
      ref['per_object_jf'])
  # Same numbers as the official CSVs (written with '%.3f').
  g_csv = ','.join(f'{v:.3f}' for v in out['global'].values())
  assert g_csv == str(ref['global_csv']).splitlines()[1]
  rows = [f"{r['Sequence']},{r['J-Mean']:.3f},{r['F-Mean']:.3f}"
          for r in out['per_object']]
  assert rows == str(ref['per_object_csv']).splitlines()[1:]


def test_summarize_averages_over_objects_not_sequences():
  one = {'J': np.ones((1, 4)), 'F': np.ones((1, 4))}
  three = {'J': np.zeros((3, 4)), 'F': np.zeros((3, 4))}
  out = dm.summarize({'a': one, 'b': three})
  assert out['global']['J-Mean'] == 0.25  # per sequence would give 0.5
  assert out['global']['J&F-Mean'] == 0.25
  assert [r['Sequence'] for r in out['per_object']] == ['a_1', 'b_1', 'b_2',
                                                        'b_3']
