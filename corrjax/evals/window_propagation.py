"""Label propagation with LIIR/MAST's inference protocol.

Semantics (shasha521/LIIR_pytorch@21c7ba5, the `--ref 0 --compact`
evaluation of its README): `evaluate_davis.py:83-129` and the eval path of
`models/colorizer_momen.py:100-207`.
* Frames are zero-padded at the bottom and right to a multiple of the
  feature stride (`evaluate_davis.py:84-96`); the network's features f are
  on that grid, h x w cells.
* Frame t >= 1 (the reference's i + 1) reads the references
  {0, 5} n [0, i] and {i, i - 2, i - 4} n [1, i], sorted and deduplicated
  (`evaluate_davis.py:102-106`): up to 5 frames.
* For each query cell q of frame t and each reference r, the (2R + 1)^2
  window of cells q + d, |dy|, |dx| <= R (R = 14: 29 x 29) holds the raw
  dot products <f_t(q), f_r(q + d)>: no normalisation, no temperature,
  zero outside the frame (spatial-correlation-sampler, `:72-77,130-133`).
  One softmax per query over all references x window (`:173-175`).
* Compactness (`:177-193`, eval branch): per query and reference, the two
  largest probabilities of that reference's window (of the joint softmax)
  with weights softmax(their values), and the Gaussian mixture
  G(d) = sum_i w_i exp(-4 ln 2 |d - c_i|^2) (sigma 1, `make_gaussian`
  `:29-39`) over the window. Where the larger peak is > `compact_threshold`
  (0.1), G replaces that reference's probabilities, unnormalised.
* Labels: the references' label maps subsampled `[::s, ::s]` (the cell's
  top-left pixel) as one-hot (`prep`, `:88-94`), unfolded over the same
  window with zero padding (`:198-203`); foreground channels (ids >= 1)
  multiplied by `foreground_boost` (1.05, `:204-206`); the prediction is
  sum over references x window of probability x label, unnormalised.
* It is upsampled bilinearly (align_corners False) to the padded frame and
  hardened by argmax (`evaluate_davis.py:125-129`); the hard map is the
  label map of frame t when it is a reference later.

Not reproduced: MAST's ROI search for references more than 15 frames away
(`colorizer_momen.py:102-128`): `--compact` sets its count to 0, so every
reference is matched in its window, as here.

Layout: query cells are cut into tile x tile blocks (8 in `propagate`);
the keys a block can see are one (tile + 2R)^2 patch per reference, so
each block is one matmul against its patches (1.5x the window's products
at R = 14, tile 8; 1.2x at tile 4, whose smaller matmuls ran 1.3x slower
on 2 CPU cores). Softmax, compactness and the label sum run on that patch grid
with a static mask of each query's window (no gathers); the label sum is
a second matmul. Tile rows run in a `lax.map`; memory is one tile row of
products.
"""

from collections.abc import Callable
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from corrjax.evals import labels as labels_lib

MAX_REFERENCES = 5  # {0, 5, i, i - 2, i - 4}.
_HIGHEST = jax.lax.Precision.HIGHEST


def reference_frames(t: int) -> list[int]:
  """Frames read to predict frame t >= 1 (`evaluate_davis.py:104-106`)."""
  if t < 1:
    raise ValueError(f"frame {t}: only frames >= 1 are predicted.")
  i = t - 1
  refs = [x for x in (0, 5) if x <= i] + [x for x in range(i, i - 6, -2)
                                          if x > 0]
  return sorted(set(refs))


@functools.lru_cache(maxsize=None)
def _in_window(window: int, tile: int) -> np.ndarray:
  """bool [tile^2, side^2] (side = tile + 2R): key cell (ky, kx) of a
  block's patch lies in the window of the block's query (a, b)."""
  side = tile + 2 * window
  a, b = np.divmod(np.arange(tile * tile), tile)
  ky, kx = np.divmod(np.arange(side * side), side)
  return ((ky >= a[:, None]) & (ky <= a[:, None] + 2 * window)
          & (kx >= b[:, None]) & (kx <= b[:, None] + 2 * window))


def _compact(probs: jax.Array, inside: jax.Array, side: int,
             threshold: float) -> jax.Array:
  """`colorizer_momen.py:177-193`: per query and reference, G from the two
  largest probabilities replaces them where the largest is > threshold.

  Args:
    probs: float [..., S, side^2] on the patch grid (0 outside the window).
    inside: bool, broadcastable to probs: in the query's window.
    side: patch side.
    threshold: the peak above which G replaces the probabilities.
  """
  first = jnp.argmax(probs, -1)
  top1 = jnp.max(probs, -1)
  cells = jnp.arange(side * side)
  # The reference's top-2 runs over the query's window only: where the
  # softmax underflows, the second peak is a tie at 0 that must be broken
  # inside the window (first window position in row-major order), never at
  # a patch cell outside it, which would make the result depend on `tile`.
  rest = jnp.where((cells == first[..., None]) | ~inside, -1.0, probs)
  second = jnp.argmax(rest, -1)
  top2 = jnp.max(rest, -1)
  weights = jax.nn.softmax(jnp.stack([top1, top2], -1), -1)
  grid = jnp.arange(side, dtype=jnp.float32)
  heat = 0.0
  for i, peak in enumerate((first, second)):
    cy, cx = jnp.divmod(peak, side)
    gy = jnp.exp(-4 * math.log(2) * (grid - cy[..., None]) ** 2)
    gx = jnp.exp(-4 * math.log(2) * (grid - cx[..., None]) ** 2)
    heat = heat + weights[..., i, None, None] * gy[..., :, None] * gx[
        ..., None, :]
  heat = jnp.where(inside, heat.reshape(probs.shape), 0.0)
  return jnp.where(top1[..., None] > threshold, heat, probs)


@functools.partial(jax.jit, static_argnames=("window", "tile",
                                             "compact_threshold",
                                             "foreground_boost"))
def frame_step(query: jax.Array, feats: jax.Array, labels: jax.Array,
               valid: jax.Array, *, window: int, tile: int = 4,
               compact_threshold: float = 0.1,
               foreground_boost: float = 1.05) -> jax.Array:
  """One target frame's soft labels.

  Args:
    query: float [h, w, C] features of the target frame.
    feats: float [S, h, w, C] features of the reference slots.
    labels: float [S, h, w, K] their one-hot labels.
    valid: bool [S], slots in use (slot 0 must be).
    window: R, the window's half side in cells.
    tile: query block side of the layout.
    compact_threshold: peak above which G replaces the probabilities (1.0
      or more: never).
    foreground_boost: factor of channels 1.. (1.0: none).

  Returns:
    float32 [h, w, K], sum over slots x window of probability x label.
  """
  h, w, c = query.shape
  k = labels.shape[-1]
  r, side = window, tile + 2 * window
  ty, tx = -(-h // tile), -(-w // tile)
  q = jnp.pad(query, ((0, ty * tile - h), (0, tx * tile - w), (0, 0)))
  q = q.reshape(ty, tile, tx, tile, c).transpose(0, 2, 1, 3, 4).reshape(
      ty, tx, tile * tile, c)
  pad = ((0, 0), (r, r + ty * tile - h), (r, r + tx * tile - w), (0, 0))
  keys, labs = jnp.pad(feats, pad), jnp.pad(labels, pad)
  cols = np.arange(tx)[:, None] * tile + np.arange(side)[None, :]
  inside = (_in_window(window, tile)[None, :, None, :]
            & valid[None, None, :, None])  # [1, tile^2, S, side^2]

  def tile_row(args):
    qrow, row = args

    def patches(x):  # [S, H', W', D] -> [tx, S, side^2, D]
      band = jax.lax.dynamic_slice_in_dim(x, row * tile, side, axis=1)
      band = band[:, :, cols]  # [S, side, tx, side, D]
      return band.transpose(2, 0, 1, 3, 4).reshape(tx, x.shape[0], -1,
                                                    x.shape[-1])

    logits = jnp.einsum("nqc,nskc->nqsk", qrow, patches(keys),
                        precision=_HIGHEST)
    logits = jnp.where(inside, logits, -jnp.inf)
    probs = jax.nn.softmax(logits.reshape(*logits.shape[:2], -1), -1)
    probs = probs.reshape(logits.shape)
    if compact_threshold < 1.0:
      probs = _compact(probs, inside, side, compact_threshold)
    return jnp.einsum("nqsk,nskc->nqc", probs, patches(labs),
                      precision=_HIGHEST)

  out = jax.lax.map(tile_row, (q, jnp.arange(ty)))  # [ty, tx, tile^2, K]
  out = out.reshape(ty, tx, tile, tile, k).transpose(0, 2, 1, 3, 4).reshape(
      ty * tile, tx * tile, k)[:h, :w]
  return out * jnp.asarray([1.0] + [foreground_boost] * (k - 1), out.dtype)


def propagate(feats: np.ndarray, first: np.ndarray, num_classes: int, *,
              window: int = 14, compact_threshold: float = 0.1,
              foreground_boost: float = 1.05, stride: int = 4,
              tile: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """The protocol on one video's features.

  Args:
    feats: float [T, h, w, C] per-cell features (used as they are: raw dot
      products).
    first: int [h * stride, w * stride] frame 0's ids, zero-padded.
    num_classes: K (ids in [0, K)).
    window, compact_threshold, foreground_boost: see `frame_step`.
    stride: pixels per cell.
    tile: layout block side (results do not depend on it).

  Returns:
    (float32 [T - 1, h, w, K] soft labels of frames 1.., int32
    [T, h * stride, w * stride] hard label maps, frame 0 = `first`).
  """
  t, h, w, _ = feats.shape
  if first.shape != (h * stride, w * stride):
    raise ValueError(f"first mask {first.shape} is not the padded frame "
                     f"{(h * stride, w * stride)} of a {h} x {w} grid.")
  maps = [np.asarray(first, np.int32)]
  cells = [labels_lib.one_hot(maps[0][::stride, ::stride], num_classes)]
  softs = []
  for target in range(1, t):
    refs = reference_frames(target)
    slots = refs + [refs[0]] * (MAX_REFERENCES - len(refs))
    valid = np.arange(MAX_REFERENCES) < len(refs)
    soft = np.asarray(frame_step(
        jnp.asarray(feats[target]), jnp.asarray(feats[slots]),
        jnp.asarray(np.stack([cells[s] for s in slots])), jnp.asarray(valid),
        window=window, tile=tile, compact_threshold=compact_threshold,
        foreground_boost=foreground_boost))
    softs.append(soft)
    maps.append(labels_lib.upsample_argmax(soft, h * stride, w * stride))
    cells.append(labels_lib.one_hot(maps[-1][::stride, ::stride],
                                    num_classes))
  return np.stack(softs) if softs else np.zeros((0, h, w, num_classes),
                                                np.float32), np.stack(maps)


def predict_video(video, feature_fn: Callable[[np.ndarray], np.ndarray], *,
                  window: int, compact_threshold: float,
                  foreground_boost: float, crop_size: int = -1,
                  stride: int = 4,
                  resize_back: Callable[[np.ndarray, int, int], np.ndarray] =
                  labels_lib.resize_nearest,
                  log: Callable[[str], None] | None = None) -> np.ndarray:
  """Propagates frame 0's mask through `video` (an evals.vos.Video).

  Args:
    video: frames uint8 [T, H, W, 3] and masks int [T, H, W] (only masks[0]
      is read).
    feature_fn: frames -> float [T, ceil(H / stride), ceil(W / stride), C];
      the protocol takes raw dot products of what it returns.
    window, compact_threshold, foreground_boost: see `frame_step`.
    crop_size: as evals/vos.py `predict_video` (-1: native resolution).
    stride: feature stride.
    resize_back: brings predictions back from the crop_size square.
    log: if given, gets one line of per-stage speeds (frames/s).

  Returns:
    int32 [T, H, W] predicted ids; frame 0 is the ground truth's.
  """
  t = len(video.masks)
  frames, first = labels_lib.frames_and_first_mask(video, crop_size)
  size = frames.shape[1:3]
  start = time.time()
  feats = np.asarray(feature_fn(frames), np.float32)
  extracted = time.time()
  grid = labels_lib.check_feature_grid(video.name, feats, size, stride)
  padded = np.zeros((grid[0] * stride, grid[1] * stride), np.int32)
  padded[:size[0], :size[1]] = first
  _, maps = propagate(feats, padded, int(first.max()) + 1, window=window,
                      compact_threshold=compact_threshold,
                      foreground_boost=foreground_boost, stride=stride)
  preds = [m[:size[0], :size[1]] for m in maps[1:]]
  if log is not None:
    log(labels_lib.speed_line(video.name, t, size, extracted - start,
                              time.time() - extracted, "window propagation"))
  return labels_lib.with_first_mask(video, preds, crop_size, resize_back)
