"""The random geometric transformation Phi of Mask-VOS (Eqs. 11-15).

Phi is "scaling, flipping, and cropping" (paper §3.2): a crop box of the
frame, resized to a fixed output size (a zoom), optionally mirrored left to
right. The same Phi applies to a frame and to a feature map of that frame,
so that E(Phi(I)) and Phi(E(I)) can be compared cell by cell (Eq. 11
transformation-equivariance). The released code (DUL's views, see
reference/liir_maskvos.md §2.5; `framework_quan.py` L160-273) zooms by
s ~ U[0.5, 1] with a guided h-flip and warps logit maps with
`affine_grid` + `grid_sample`; `sample_phi` draws the same family.

Coordinate convention (differs from ops/geometry.py on purpose): a box
(x1, y1, x2, y2) is in units of the frame's EXTENT, [0, 1] from the left
(top) edge of the first pixel to the right (bottom) edge of the last
("align_corners=False"). A map of W columns, whatever its stride, has its
column c centred at u = (c + 0.5) / W. So a box means the same region in a
frame and in its stride-8 feature map, and output cell (r, c) of Phi samples
the point

  u = x1 + (c + 0.5) / W_out * (x2 - x1)   (u = x2 - ... when flipped),
  v = y1 + (r + 0.5) / H_out * (y2 - y1),

read at source pixel (u * W_in - 0.5, v * H_in - 0.5) by separable bilinear
(or nearest) interpolation, clamped at the border.
"""

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def _weights(lo: jax.Array, hi: jax.Array, flip: jax.Array, n_out: int,
             n_in: int, method: str) -> jax.Array:
  """Interpolation matrices [B, n_out, n_in] along one axis."""
  frac = (jnp.arange(n_out, dtype=jnp.float32) + 0.5) / n_out  # [n_out]
  frac = jnp.where(flip[:, None], 1.0 - frac[None], frac[None])
  pos = (lo[:, None] + frac * (hi - lo)[:, None]) * n_in - 0.5  # [B, n_out]
  pos = jnp.clip(pos, 0.0, n_in - 1.0)
  grid = jnp.arange(n_in, dtype=jnp.float32)
  if method == "nearest":
    # Ties round half to even, as torch's grid_sample (nearbyint).
    return (jnp.round(pos)[..., None] == grid).astype(jnp.float32)
  if method != "bilinear":
    raise ValueError(f"Unknown method {method!r}: 'bilinear' or 'nearest'.")
  return jnp.maximum(0.0, 1.0 - jnp.abs(pos[..., None] - grid))


def apply_phi(x: jax.Array, boxes: jax.Array, flips: jax.Array,
              out_size: tuple[int, int], *,
              method: str = "bilinear") -> jax.Array:
  """Phi: crops `boxes` of `x`, resizes them to `out_size`, mirrors `flips`.

  Args:
    x: float [B, H, W, C] frames, masks or feature maps.
    boxes: float [B, 4] (x1, y1, x2, y2), frame-extent units (see module).
    flips: bool [B], mirror left to right.
    out_size: (H_out, W_out).
    method: 'bilinear' (images, features) or 'nearest' (label maps).

  Returns:
    float [B, H_out, W_out, C].
  """
  _, h, w, _ = x.shape
  h_out, w_out = out_size
  no_flip = jnp.zeros_like(flips, dtype=bool)
  wy = _weights(boxes[:, 1], boxes[:, 3], no_flip, h_out, h, method)
  wx = _weights(boxes[:, 0], boxes[:, 2], flips.astype(bool), w_out, w,
                method)
  return jnp.einsum("boh,bhwc,bpw->bopc", wy, x.astype(jnp.float32), wx,
                    precision=_HIGHEST)


def sample_phi(rng: jax.Array, batch: int, *,
               scale: tuple[float, float] = (0.5, 1.0),
               flip_prob: float = 0.5) -> tuple[jax.Array, jax.Array]:
  """Random Phi: square-scale zoom crops at random places, random flips.

  The box side is s ~ U[scale] of the frame's side (in both axes, so the
  aspect ratio is kept), its top-left corner uniform over the positions
  that keep it inside the frame.

  Args:
    rng: PRNG key.
    batch: B.
    scale: range of s.
    flip_prob: probability of a mirror.

  Returns:
    (boxes float32 [B, 4], flips bool [B]).
  """
  s_rng, xy_rng, f_rng = jax.random.split(rng, 3)
  s = jax.random.uniform(s_rng, (batch, 1), minval=scale[0],
                         maxval=scale[1])
  corner = jax.random.uniform(xy_rng, (batch, 2)) * (1.0 - s)
  boxes = jnp.concatenate([corner, corner + s], axis=-1)
  flips = jax.random.uniform(f_rng, (batch,)) < flip_prob
  return boxes, flips


def identity_phi(batch: int) -> tuple[jax.Array, jax.Array]:
  """The identity transformation: full-frame boxes, no flips."""
  return (jnp.tile(jnp.array([[0.0, 0.0, 1.0, 1.0]]), (batch, 1)),
          jnp.zeros((batch,), bool))
