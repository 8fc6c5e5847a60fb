"""DAVIS J/F metrics in numpy, matching davis2017-evaluation (DE) at ac7c43f."""

from collections.abc import Mapping
import warnings

import numpy as np

VOID_LABEL = 255  # DE davis2017/davis.py:12
GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean',
                  'F-Recall', 'F-Decay')  # DE evaluation_method.py:42
PER_OBJECT_COLUMNS = ('Sequence', 'J-Mean', 'F-Mean')  # ibid. :54


def _as_masks(annotation, segmentation, void_pixels):
  """Bool (gt, seg, keep-mask), each [..., H, W], after shape checks."""
  gt = np.asarray(annotation).astype(bool)
  seg = np.asarray(segmentation).astype(bool)
  if gt.shape != seg.shape or gt.ndim < 2:
    raise ValueError(f'annotation {gt.shape} and segmentation {seg.shape} '
                     'must have the same shape [..., H, W].')
  if void_pixels is None:
    return gt, seg, np.ones_like(gt)
  void = np.asarray(void_pixels).astype(bool)
  if void.shape != gt.shape:
    raise ValueError(f'void_pixels {void.shape} does not match {gt.shape}.')
  return gt, seg, ~void


def region_similarity(annotation, segmentation, void_pixels=None):
  """Jaccard index J per frame (DE davis2017/metrics.py:6-37).

  Args:
    annotation: ground-truth masks [..., H, W] (nonzero = object).
    segmentation: predicted masks [..., H, W].
    void_pixels: optional masks [..., H, W]; those pixels are ignored.

  Returns:
    float64 array [...]: |S & G| / |S | G| over non-void pixels, 1 where the
    union is empty.
  """
  gt, seg, keep = _as_masks(annotation, segmentation, void_pixels)
  inter = np.sum(gt & seg & keep, axis=(-2, -1))
  union = np.sum((gt | seg) & keep, axis=(-2, -1))
  with np.errstate(divide='ignore', invalid='ignore'):
    ratio = inter / union
  return np.where(union == 0, 1.0, ratio)


def _boundary_map(seg):
  """One-pixel boundary map, DE `_seg2bmap` (metrics.py:122-178).

  A pixel is on the boundary if it differs from its east, south or
  south-east neighbour; the last row only compares with east, the last column
  only with south, and the bottom-right pixel is never a boundary (so a mask
  covering the whole frame has an empty boundary). DE's unused width/height
  resampling branch is not reproduced. bool [..., H, W] -> bool [..., H, W].
  """
  east = np.zeros_like(seg)
  east[..., :, :-1] = seg[..., :, 1:]
  south = np.zeros_like(seg)
  south[..., :-1, :] = seg[..., 1:, :]
  south_east = np.zeros_like(seg)
  south_east[..., :-1, :-1] = seg[..., 1:, 1:]
  bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
  bmap[..., -1, :] = seg[..., -1, :] ^ east[..., -1, :]
  bmap[..., :, -1] = seg[..., :, -1] ^ south[..., :, -1]
  bmap[..., -1, -1] = False
  return bmap


def _disk(radius):
  """`skimage.morphology.disk(radius)` (strict radius): bool [n, n].

  Offsets are `arange(-radius, radius + 1)`, so a non-integer radius (only
  possible with bound_th >= 1) gives half-integer offsets, as in skimage.
  """
  offsets = np.arange(-radius, radius + 1)
  return offsets[:, None]**2 + offsets[None, :]**2 <= radius**2


def _count_dilated_hits(src, query, kernel):
  """Counts query pixels where `cv2.dilate(src, kernel)` is set.

  Equals `sum(query * cv2.dilate(src, kernel))` (DE metrics.py:87-93) for
  bool src, query [H, W] and a disk kernel [kh, kw]: cv2 anchors the kernel at
  (kh // 2, kw // 2), dst(p) = max of src(p + k - anchor) over set cells k,
  and pixels outside the image never contribute. Each disk row is one run of
  columns, tested with row-wise prefix sums of `src`.
  """
  h, w = src.shape
  prefix = np.zeros((h, w + 1), np.int32)
  np.cumsum(src, axis=1, dtype=np.int32, out=prefix[:, 1:])
  ys, xs = np.nonzero(query)
  hit = np.zeros(ys.shape, bool)
  kh, kw = kernel.shape
  for row in range(kh):
    cols = np.flatnonzero(kernel[row])
    if cols.size == 0:
      continue
    ys_src = ys + (row - kh // 2)
    inside = (ys_src >= 0) & (ys_src < h)
    ys_in, xs_in = ys_src[inside], xs[inside]
    start = np.clip(xs_in + (cols[0] - kw // 2), 0, w)
    stop = np.clip(xs_in + (cols[-1] - kw // 2) + 1, 0, w)
    hit[inside] |= prefix[ys_in, stop] > prefix[ys_in, start]
  return int(np.count_nonzero(hit))


def _f_score(n_seg, n_gt, seg_hits, gt_hits):
  """Boundary F from counts, DE empty-boundary rules (metrics.py:99-119)."""
  if n_seg == 0 and n_gt > 0:
    precision, recall = 1.0, 0.0
  elif n_seg > 0 and n_gt == 0:
    precision, recall = 0.0, 1.0
  elif n_seg == 0 and n_gt == 0:
    precision, recall = 1.0, 1.0
  else:
    precision = seg_hits / float(n_seg)
    recall = gt_hits / float(n_gt)
  if precision + recall == 0:
    return 0.0
  return 2 * precision * recall / (precision + recall)


def boundary_measure(annotation, segmentation, void_pixels=None,
                     bound_th=0.008):
  """Boundary F-measure per frame (DE davis2017/metrics.py:40-119).

  Void pixels are removed from both masks before their boundaries are taken;
  the boundaries are matched within a disk of radius `bound_th` pixels when
  bound_th >= 1, else ceil(bound_th * ||(H, W)||) (8 px at 480x854).

  Args:
    annotation: ground-truth masks [..., H, W] (nonzero = object).
    segmentation: predicted masks [..., H, W].
    void_pixels: optional masks [..., H, W].
    bound_th: tolerance, in pixels (>= 1) or as a fraction of the diagonal.

  Returns:
    float64 array [...] of F = 2PR / (P + R).
  """
  gt, seg, keep = _as_masks(annotation, segmentation, void_pixels)
  h, w = gt.shape[-2:]
  radius = bound_th if bound_th >= 1 else np.ceil(
      bound_th * np.linalg.norm((h, w)))
  kernel = _disk(radius)
  gt_b = _boundary_map(gt & keep).reshape(-1, h, w)
  seg_b = _boundary_map(seg & keep).reshape(-1, h, w)
  out = np.empty(gt_b.shape[0], np.float64)
  for i, (g, s) in enumerate(zip(gt_b, seg_b)):
    n_seg, n_gt = int(np.count_nonzero(s)), int(np.count_nonzero(g))
    both = n_seg > 0 and n_gt > 0
    seg_hits = _count_dilated_hits(g, s, kernel) if both else 0
    gt_hits = _count_dilated_hits(s, g, kernel) if both else 0
    out[i] = _f_score(n_seg, n_gt, seg_hits, gt_hits)
  return out.reshape(gt.shape[:-2])


def statistics(per_frame):
  """Mean, recall and decay of a per-frame score vector (DE utils.py:135-161).

  Mean is the nanmean; recall is nanmean(x > 0.5), in which NaN frames count
  as failures; decay is nanmean(first quarter) - nanmean(last quarter) with
  bin edges round(linspace(1, n, 5)) - 1 (neighbouring bins share an edge).
  Quirk kept from DE: the edges are cast to uint8 and the stop `edge + 1` is
  uint8 arithmetic, so for n >= 256 edges wrap modulo 256 (n == 256 makes the
  last bin empty and the decay NaN). DAVIS sequences are shorter than that.

  Args:
    per_frame: float vector [n].

  Returns:
    (mean, recall, decay) as Python floats (NaN when undefined).
  """
  x = np.asarray(per_frame, dtype=np.float64)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', category=RuntimeWarning)
    mean = np.nanmean(x)
    recall = np.nanmean(x > 0.5)
    edges = np.round(np.linspace(1, len(x), 5) + 1e-10) - 1
    edges = edges.astype(np.uint8)
    first = x[edges[0]:edges[1] + np.uint8(1)]
    last = x[edges[3]:edges[4] + np.uint8(1)]
    decay = np.nanmean(first) - np.nanmean(last)
  return float(mean), float(recall), float(decay)


def evaluate_semisupervised(gt, pred):
  """Per-object per-frame J and F (DE evaluation.py:28-41, 83-90).

  As in DE: void (255) in `gt` becomes background (davis.py:87-90) and no
  void mask is used; the objects are 1..K with K = max id of the first GT
  frame (later GT ids > K are ignored); the first and last frames are not
  scored; an object absent from `pred` scores as an empty mask.

  Args:
    gt: integer label map [T, H, W], T >= 3.
    pred: integer label map [T, H, W] with ids in 0..K (frames 0 and T-1 are
      not read).

  Returns:
    {'J': float64 [K, T - 2], 'F': float64 [K, T - 2]}.

  Raises:
    ValueError: on bad shapes or a scored `pred` id outside 0..K (DE exits,
      evaluation.py:29-31).
  """
  gt, pred = np.asarray(gt), np.asarray(pred)
  if gt.ndim != 3 or gt.shape != pred.shape or gt.shape[0] < 3:
    raise ValueError(f'gt {gt.shape} and pred {pred.shape} must both be '
                     '[T, H, W] with T >= 3.')
  gt = np.where(gt == VOID_LABEL, 0, gt)
  num_objects = int(gt[0].max())
  gt, pred = gt[1:-1], pred[1:-1]
  if pred.min() < 0 or pred.max() > num_objects:
    raise ValueError(f'pred has ids in [{pred.min()}, {pred.max()}] but the '
                     f'first GT frame has {num_objects} objects; ids must be '
                     f'in 0..{num_objects}.')
  shape = (num_objects, gt.shape[0])
  res = {'J': np.zeros(shape), 'F': np.zeros(shape)}
  for k in range(num_objects):
    gt_k, pred_k = gt == k + 1, pred == k + 1
    res['J'][k] = region_similarity(gt_k, pred_k)
    res['F'][k] = boundary_measure(gt_k, pred_k)
  return res


def summarize(per_sequence: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
  """Global and per-object results (DE evaluation_method.py:41-57).

  As in DE evaluation.py:91-104, statistics are taken per object over its
  frames, then averaged over all objects of all sequences (not per sequence);
  J&F-Mean = (J-Mean + F-Mean) / 2. Means are plain np.mean, so one NaN
  object makes the global value NaN.

  Args:
    per_sequence: {sequence name: evaluate_semisupervised output}, in the
      order the rows should appear (DE: the ImageSets order).

  Returns:
    {'global': {column: float for GLOBAL_COLUMNS},
     'per_object': [{'Sequence': '<seq>_<k>', 'J-Mean': ..., 'F-Mean': ...}]}
    (k is 1-based), the data of DE's global_results-<set>.csv and
    per-sequence_results-<set>.csv before their '%.3f' formatting.
  """
  stats = {'J': [], 'F': []}
  rows = []
  for name, res in per_sequence.items():
    j_all, f_all = np.asarray(res['J']), np.asarray(res['F'])
    for k in range(j_all.shape[0]):
      stats['J'].append(statistics(j_all[k]))
      stats['F'].append(statistics(f_all[k]))
      rows.append({'Sequence': f'{name}_{k + 1}', 'J-Mean': stats['J'][-1][0],
                   'F-Mean': stats['F'][-1][0]})
  if not rows:
    raise ValueError('summarize needs at least one object.')
  # One np.mean per 1-D list, like DE, so the summation order is identical.
  j_mrd = [np.mean([s[i] for s in stats['J']]) for i in range(3)]
  f_mrd = [np.mean([s[i] for s in stats['F']]) for i in range(3)]
  values = [(j_mrd[0] + f_mrd[0]) / 2.0, *j_mrd, *f_mrd]
  return {'global': dict(zip(GLOBAL_COLUMNS, map(float, values))),
          'per_object': rows}
