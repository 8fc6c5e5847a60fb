"""Deterministic procedural videos with exact object masks and keypoints."""

import colorsys
import dataclasses

import numpy as np

_HARMONICS = np.array([2, 3, 4], np.float32)  # Angular harmonics of shapes.
_MAX_DEFORM = 0.55  # Bound on the sum of harmonic amplitudes (radius > 0).
_TWO_PI = 2.0 * np.pi


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticVideo:
  """One synthetic video: T frames of H x W, K objects, P keypoints each.

  Textured star-shaped objects (id k + 1 drawn in front of ids <= k)
  translate, rotate, scale and deform non-rigidly over a textured, panning
  background, with slight brightness/contrast drift and pixel noise. Textures
  live in object coordinates, so they move and deform with the objects.

  Attributes:
    name: Video name, e.g. "synth_00007".
    frames: uint8 [T, H, W, 3] RGB frames.
    masks: uint8 [T, H, W]; 0 background, k in 1..K the object whose shape
      contains the pixel centre and is nearest to the camera.
    keypoints: float32 [T, K, P, 2] (x, y) pixel positions of points fixed on
      each object (pixel (i, j) has its centre at (x=j, y=i)).
    visible: bool [T, K, P]; True iff the rounded keypoint position
      (floor(x + 0.5), floor(y + 0.5)) is inside the frame and its mask value
      is the keypoint's object id.
  """
  name: str
  frames: np.ndarray
  masks: np.ndarray
  keypoints: np.ndarray
  visible: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Object:
  """Shape, texture and per-frame motion of one object over T frames.

  The boundary radius at local angle phi is
  radius * (1 + sum_n amp[t, n] * cos(h_n * phi + phase[t, n])), h = 2, 3, 4;
  the canonical shape uses base_amp, base_phase. Local coordinates map to
  pixels by x = centre[t] + scale[t] * rotation(angle[t]) @ local.
  """
  radius: float
  base_amp: np.ndarray  # [N]
  base_phase: np.ndarray  # [N]
  amp: np.ndarray  # [T, N]
  phase: np.ndarray  # [T, N]
  centre: np.ndarray  # [T, 2] (x, y) in pixels.
  angle: np.ndarray  # [T] radians.
  scale: np.ndarray  # [T]
  texture: np.ndarray  # [S, S, 3] periodic, in canonical pixels.


def _check_int(name, value, minimum, maximum=None):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  if value < minimum or (maximum is not None and value > maximum):
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise ValueError(f"{name} must be {bound}, got {value}.")


def _periodic_noise(rng, h, w, channels, sigmas, weights):
  """Sum of Gaussian-filtered white noise on an h x w torus: [h, w, c].

  Each channel is normalised to zero mean and unit standard deviation.
  """
  white = rng.standard_normal((channels, h, w), dtype=np.float32)
  f2 = np.fft.fftfreq(h)[:, None]**2 + np.fft.rfftfreq(w)[None, :]**2
  env = sum(wt * np.exp(-2.0 * (np.pi * s)**2 * f2)
            for s, wt in zip(sigmas, weights))
  env[0, 0] = 0.0  # Zero mean.
  field = np.fft.irfft2(np.fft.rfft2(white) * env, s=(h, w))
  field /= np.sqrt(np.mean(field**2, axis=(1, 2), keepdims=True)) + 1e-8
  return np.moveaxis(field, 0, -1).astype(np.float32)


def _int_freq(rng, lo, hi):
  """A random non-zero integer wave vector (kx, ky) of length ~[lo, hi]."""
  m, a = rng.uniform(lo, hi), rng.uniform(0.0, _TWO_PI)
  kx, ky = int(round(m * np.cos(a))), int(round(m * np.sin(a)))
  return (kx, ky) if (kx, ky) != (0, 0) else (int(round(m)), 0)


def _vivid_colour(rng, hue):
  rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.55, 1.0),
                            rng.uniform(0.45, 1.0))
  return np.array(rgb, np.float32) * 255.0


def _background_texture(rng, h, w):
  """Muted multi-scale noise plus oriented waves, periodic: [h, w, 3]."""
  sigmas = (1.0, 3.0, 8.0, 20.0)
  field = _periodic_noise(rng, h, w, 3, sigmas,
                          np.array(sigmas)**0.75 * rng.uniform(0.3, 1.0, 4))
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  for _ in range(rng.integers(2, 5)):
    kx, ky = _int_freq(rng, 2.0, 10.0)
    wave = np.sin(_TWO_PI * (kx * xx / w + ky * yy / h) + rng.uniform(0, 7))
    field += rng.uniform(0.3, 1.0) * wave[..., None] * rng.normal(size=3)
  mix = rng.normal(size=(3, 3)) * rng.uniform(12.0, 25.0)
  return (rng.uniform(70.0, 185.0, 3) + field @ mix.T).astype(np.float32)


def _object_texture(rng, size):
  """Two-tone stripes/checker/spots/blotches plus fine detail: [S, S, 3]."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) * (_TWO_PI / size)
  kind = rng.integers(4)
  if kind == 0:  # Stripes.
    kx, ky = _int_freq(rng, 2.0, 6.0)
    pattern = np.tanh(3.0 * np.sin(kx * xx + ky * yy + rng.uniform(0, 7)))
  elif kind == 1:  # Checker.
    a, b = rng.integers(2, 6, size=2)
    pattern = np.tanh(4.0 * np.sin(a * xx + rng.uniform(0, 7))
                      * np.sin(b * yy + rng.uniform(0, 7)))
  elif kind == 2:  # Spots.
    noise = _periodic_noise(rng, size, size, 1, (size / 14.0,), (1.0,))
    pattern = np.tanh(4.0 * (noise[..., 0] - 0.6))
  else:  # Blotches.
    noise = _periodic_noise(rng, size, size, 1, (1.0, 3.0), (1.0, 3.0))
    pattern = np.tanh(1.5 * noise[..., 0])
  hue = rng.uniform()
  c1 = _vivid_colour(rng, hue)
  c2 = _vivid_colour(rng, hue + rng.uniform(0.25, 0.75))
  p = (0.5 + 0.5 * pattern)[..., None]
  detail = _periodic_noise(rng, size, size, 3, (0.8, 2.5), (1.0, 2.5))
  return c1 * (1 - p) + c2 * p + detail * rng.uniform(14.0, 26.0)


def _sample_wrap(tex, x, y):
  """Bilinearly samples periodic tex [h, w, c] at (x, y) [N]: [N, c]."""
  h, w, c = tex.shape
  flat = tex.reshape(h * w, c)
  x0, y0 = np.floor(x), np.floor(y)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  x0, y0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
  x1, y1 = (x0 + 1) % w, (y0 + 1) % h
  top = flat[y0 * w + x0] * (1 - fx) + flat[y0 * w + x1] * fx
  bottom = flat[y1 * w + x0] * (1 - fx) + flat[y1 * w + x1] * fx
  return top * (1 - fy) + bottom * fy


def _pan_background(bg, pan, height, width):
  """Samples periodic bg [h, w, 3] shifted by pan [T, 2] (x, y): [T, H, W, 3].

  A translation needs only an integer-shift crop and a 2 x 2 blend with
  per-frame weights, which is much cheaper than general bilinear sampling.
  """
  h, w = bg.shape[:2]
  tiled = np.pad(bg, ((0, height + 1), (0, width + 1), (0, 0)), mode="wrap")
  offset = np.floor(pan)
  frac = (pan - offset)[:, None, None, :, None]
  offset = offset.astype(np.int64) % np.array([w, h])
  patch = np.stack([tiled[oy:oy + height + 1, ox:ox + width + 1]
                    for ox, oy in offset])  # [T, H + 1, W + 1, 3]
  fx, fy = frac[..., 0, :], frac[..., 1, :]
  top = patch[:, :-1, :-1] * (1 - fx) + patch[:, :-1, 1:] * fx
  bottom = patch[:, 1:, :-1] * (1 - fx) + patch[:, 1:, 1:] * fx
  return top * (1 - fy) + bottom * fy


def _radius(radius, amp, phase, phi):
  """Boundary radius at angles phi [...]; amp, phase broadcast to [..., N]."""
  waves = amp * np.cos(_HARMONICS * phi[..., None] + phase)
  return radius * (1.0 + waves.sum(axis=-1))


def _bounce(x, lo, hi):
  """Reflects positions x into [lo, hi] (triangle wave)."""
  span = hi - lo
  return lo + span - np.abs(np.mod(x - lo, 2.0 * span) - span)


def _sample_object(rng, radius, centre0, num_frames, height, width):
  """Draws deformation, motion and texture of an object."""
  n = len(_HARMONICS)
  ts = np.arange(num_frames, dtype=np.float32)[:, None]
  base_amp = rng.uniform(0.0, 0.25, n) / np.sqrt(np.arange(1, n + 1))
  wobble = rng.uniform(0.03, 0.12, n)
  shrink = min(1.0, _MAX_DEFORM / float(base_amp.sum() + wobble.sum()))
  base_amp, wobble = base_amp * shrink, wobble * shrink
  amp = base_amp + wobble * np.sin(rng.uniform(0.15, 0.45, n) * ts
                                   + rng.uniform(0, _TWO_PI, n))
  base_phase = rng.uniform(0.0, _TWO_PI, n)
  phase = base_phase + rng.normal(0.0, 0.04, n) * ts
  speed = rng.uniform(0.5, 2.5) * min(height, width) / 96.0
  heading = rng.uniform(0.0, _TWO_PI)
  velocity = speed * np.array([np.cos(heading), np.sin(heading)])
  lo = 0.05 * np.array([width, height])
  centre = _bounce(centre0 + velocity * ts, lo, 19.0 * lo)
  angle = rng.uniform(0.0, _TWO_PI) + rng.uniform(-0.07, 0.07) * ts[:, 0]
  scale = np.exp(rng.uniform(0.05, 0.2) * np.sin(
      rng.uniform(0.1, 0.35) * ts[:, 0] + rng.uniform(0, _TWO_PI)))
  size = max(16, int(np.ceil(2.0 * radius * (1.0 + _MAX_DEFORM))) + 4)
  f32 = lambda a: np.asarray(a, np.float32)
  return _Object(radius, f32(base_amp), f32(base_phase), f32(amp), f32(phase),
                 f32(centre), f32(angle), f32(scale),
                 _object_texture(rng, size).astype(np.float32))


def _initial_centres(rng, radii, height, width):
  """Frame-0 centres, spread out so that every object is partly visible."""
  centres = []
  for r in radii:
    for _ in range(50):
      c = rng.uniform(0.2, 0.8, 2) * np.array([width, height])
      if all(np.hypot(*(c - c2)) >= 0.8 * (r + r2)
             for c2, r2 in zip(centres, radii)):
        break
    centres.append(c)
  return centres


def _render(bg, pan, objects, height, width):
  """Composites objects back to front: frames float32 [T, H, W, 3], masks."""
  xs = np.arange(width, dtype=np.float32)[None, None, :]
  ys = np.arange(height, dtype=np.float32)[None, :, None]
  image = _pan_background(bg, pan, height, width)
  masks = np.zeros(image.shape[:3], np.uint8)
  for k, obj in enumerate(objects, start=1):
    # Object-local coordinates by the inverse similarity transform.
    dx = xs - obj.centre[:, 0, None, None]
    dy = ys - obj.centre[:, 1, None, None]
    cos = np.cos(obj.angle)[:, None, None]
    sin = np.sin(obj.angle)[:, None, None]
    scale = obj.scale[:, None, None]
    lx, ly = (cos * dx + sin * dy) / scale, (cos * dy - sin * dx) / scale
    r = np.hypot(lx, ly)
    # Only pixels this close can be covered, even partly (alpha > 0).
    near = r < obj.radius * (1.0 + _MAX_DEFORM) + 1.0 / scale
    t = np.nonzero(near)[0]
    lx, ly, r = lx[near], ly[near], r[near]
    phi = np.arctan2(ly, lx)
    rho_t = _radius(obj.radius, obj.amp[t], obj.phase[t], phi)
    # Radial warp back to the canonical (mean) shape, where the texture lives.
    warp = _radius(obj.radius, obj.base_amp, obj.base_phase, phi) / rho_t
    half = obj.texture.shape[0] / 2.0
    colour = _sample_wrap(obj.texture, lx * warp + half, ly * warp + half)
    alpha = np.clip(0.5 + (rho_t - r) * obj.scale[t], 0.0, 1.0)[:, None]
    image[near] = image[near] * (1.0 - alpha) + colour * alpha
    masks[near] = np.where(r < rho_t, np.uint8(k), masks[near])
  return image, masks


def _keypoints(obj, angles, fractions):
  """Forward-maps canonical keypoints (angle, radius fraction): [T, P, 2]."""
  rho = _radius(obj.radius, obj.amp[:, None], obj.phase[:, None], angles[None])
  lx, ly = fractions * rho * np.cos(angles), fractions * rho * np.sin(angles)
  cos, sin = np.cos(obj.angle)[:, None], np.sin(obj.angle)[:, None]
  s = obj.scale[:, None]
  x = obj.centre[:, 0, None] + s * (cos * lx - sin * ly)
  y = obj.centre[:, 1, None] + s * (sin * lx + cos * ly)
  return np.stack([x, y], axis=-1)


def _visibility(keypoints, masks):
  """bool [T, K, P]: rounded point in frame and mask equals its object id."""
  t, h, w = masks.shape
  col = np.floor(keypoints[..., 0] + 0.5).astype(np.int64)
  row = np.floor(keypoints[..., 1] + 0.5).astype(np.int64)
  inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
  ids = np.arange(1, keypoints.shape[1] + 1)[None, :, None]
  frame = np.arange(t)[:, None, None]
  values = masks[frame, np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
  return inside & (values == ids)


def _photometric(rng, image):
  """Global brightness/contrast drift and Gaussian noise, then to uint8."""
  ts = np.arange(image.shape[0], dtype=np.float32)[:, None, None, None]
  contrast = 1.0 + rng.uniform(0.0, 0.08) * np.sin(
      rng.uniform(0.1, 0.5) * ts + rng.uniform(0, _TWO_PI))
  bright = rng.uniform(0.0, 10.0) * np.sin(
      rng.uniform(0.1, 0.5) * ts + rng.uniform(0, _TWO_PI))
  noise = rng.standard_normal(image.shape, dtype=np.float32)
  image = (image - 128.0) * contrast + 128.0 + bright
  image += noise * rng.uniform(1.0, 3.0)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_video(seed: int, *, num_frames: int, height: int, width: int,
               num_objects: int, num_keypoints: int = 8) -> SyntheticVideo:
  """Generates one video deterministically from `seed`.

  Args:
    seed: Non-negative integer; equal arguments give byte-identical arrays.
    num_frames: T >= 1.
    height: H >= 1 pixels.
    width: W >= 1 pixels.
    num_objects: K in [1, 255].
    num_keypoints: P >= 1 keypoints per object, fixed on the object at
      0.3-0.8 of the boundary radius.

  Returns:
    A `SyntheticVideo` named f"synth_{seed:05d}" with frames [T, H, W, 3],
    masks [T, H, W], keypoints [T, K, P, 2] (x, y) and visible [T, K, P].

  Raises:
    ValueError: If an argument is out of range.
  """
  _check_int("seed", seed, 0)
  _check_int("num_frames", num_frames, 1)
  _check_int("height", height, 1)
  _check_int("width", width, 1)
  _check_int("num_objects", num_objects, 1, 255)
  _check_int("num_keypoints", num_keypoints, 1)
  rng = np.random.default_rng(seed)
  ts = np.arange(num_frames, dtype=np.float32)[:, None]
  bg = _background_texture(rng, 2 * height + 16, 2 * width + 16)
  pan_dir = rng.uniform(0.0, _TWO_PI)
  pan = (rng.uniform(0.0, 1000.0, 2) + rng.uniform(0.3, 1.2) * ts
         * np.array([np.cos(pan_dir), np.sin(pan_dir)])).astype(np.float32)
  radii = np.maximum(1.5, rng.uniform(0.11, 0.2, num_objects)
                     * min(height, width))
  centres = _initial_centres(rng, radii, height, width)
  objects = [_sample_object(rng, r, c, num_frames, height, width)
             for r, c in zip(radii, centres)]
  image, masks = _render(bg, pan, objects, height, width)
  keypoints = np.stack([
      _keypoints(obj,
                 rng.uniform(0.0, _TWO_PI, num_keypoints).astype(np.float32),
                 rng.uniform(0.3, 0.8, num_keypoints).astype(np.float32))
      for obj in objects], axis=1).astype(np.float32)
  return SyntheticVideo(
      name=f"synth_{seed:05d}", frames=_photometric(rng, image), masks=masks,
      keypoints=keypoints, visible=_visibility(keypoints, masks))


def make_videos(seed: int, *, num_videos: int, num_frames: int, height: int,
                width: int, max_objects: int = 3, num_keypoints: int = 8,
                name_offset: int = 0) -> list[SyntheticVideo]:
  """Generates `num_videos` independent videos (see `make_video`).

  Video i draws its seed and its number of objects (uniform in
  [1, max_objects]) from np.random.SeedSequence(seed, spawn_key=(i,)), so it
  does not depend on `num_videos`; it is named f"synth_{name_offset + i:05d}".

  Returns:
    A list of `num_videos` `SyntheticVideo`s.

  Raises:
    ValueError: If an argument is out of range.
  """
  _check_int("seed", seed, 0)
  _check_int("num_videos", num_videos, 1)
  _check_int("max_objects", max_objects, 1, 255)
  _check_int("name_offset", name_offset, 0)
  videos = []
  for i in range(num_videos):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    num_objects = int(rng.integers(1, max_objects + 1))
    video = make_video(int(rng.integers(2**63 - 1)), num_frames=num_frames,
                       height=height, width=width, num_objects=num_objects,
                       num_keypoints=num_keypoints)
    name = f"synth_{name_offset + i:05d}"
    videos.append(dataclasses.replace(video, name=name))
  return videos
