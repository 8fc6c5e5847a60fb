"""Crop-box geometry of feature cells.

Coordinate convention (SFC `code/utils/transform_coord.py:149-152`): a crop
of the source frame is a box (x1, y1, x2, y2) with
x1 = j / (W - 1), y1 = i / (H - 1), x2 = (j + w - 1) / (W - 1),
y2 = (i + h - 1) / (H - 1), where (i, j) is the top-left pixel (row, column),
(h, w) the crop size and (H, W) the frame size: coordinates in [0, 1] of the
frame, normalised separately in x and y, pixel centres on integers. Points are
(x, y) pairs. A crop's feature map of h_f x w_f cells splits the box into
equal bins; the cell (row r, column c) has its centre at
(x1 + (c + 0.5) * (x2 - x1) / w_f, y1 + (r + 0.5) * (y2 - y1) / h_f).
"""

import jax
import jax.numpy as jnp


def cell_centers(boxes: jax.Array, height: int, width: int) -> jax.Array:
  """Centres of the cells of feature maps of crops.

  Args:
    boxes: float [B, 4] crop boxes (x1, y1, x2, y2), see module docstring.
    height, width: feature map size (h_f, w_f).

  Returns:
    float [B, h_f * w_f, 2] cell centres (x, y), cells in row-major order.
  """
  x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
  cols = jnp.arange(width, dtype=boxes.dtype)[None, None, :]
  rows = jnp.arange(height, dtype=boxes.dtype)[None, :, None]
  # Same operation order as the reference, so that ties at d == r round
  # the same way: bin size first, then (index + 0.5) * bin + start.
  cx = (cols + 0.5) * ((x2 - x1) / width) + x1
  cy = (rows + 0.5) * ((y2 - y1) / height) + y1
  cx, cy = jnp.broadcast_arrays(cx, cy)
  return jnp.stack([cx, cy], axis=-1).reshape(boxes.shape[0], -1, 2)


def cell_diagonals(boxes: jax.Array, height: int, width: int) -> jax.Array:
  """Diagonal length of one cell of each crop's feature map: float [B]."""
  bin_w = (boxes[:, 2] - boxes[:, 0]) / width
  bin_h = (boxes[:, 3] - boxes[:, 1]) / height
  return jnp.sqrt(bin_w**2 + bin_h**2)


def positive_mask(boxes_q: jax.Array, boxes_k: jax.Array, height: int,
                  width: int, radius: float) -> jax.Array:
  """Pairs of cells of two crops whose centres lie within `radius`.

  SFC `regression_loss` (`code/models/fine_grained.py:78-122`, after PixPro):
  distances between cell centres in frame coordinates, divided by the larger
  of the two crops' cell diagonals, compared strictly: d < radius.

  Args:
    boxes_q, boxes_k: float [B, 4] boxes of the query and key crops.
    height, width: feature map size, the same for both crops.
    radius: positive radius in units of the larger cell diagonal.

  Returns:
    float [B, h_f * w_f (query), h_f * w_f (key)] with 1.0 for positives.
  """
  cq = cell_centers(boxes_q, height, width)
  ck = cell_centers(boxes_k, height, width)
  diag = jnp.maximum(cell_diagonals(boxes_q, height, width),
                     cell_diagonals(boxes_k, height, width))
  diff = cq[:, :, None, :] - ck[:, None, :, :]
  dist = jnp.sqrt(jnp.sum(diff**2, axis=-1)) / diag[:, None, None]
  return (dist < radius).astype(boxes_q.dtype)
