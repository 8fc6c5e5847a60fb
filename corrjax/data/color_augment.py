"""Photometric and flip augmentations of one view, torchvision semantics.

Each op takes and returns a uint8 [H, W, 3] RGB numpy array and works
through PIL exactly as torchvision's PIL backend does
(`torchvision/transforms/_functional_pil.py`): brightness, contrast and
saturation are `ImageEnhance` blends with a degenerate image (black, the
rounded mean luma, the luma image), hue is a uint8 shift of PIL's HSV hue
channel, grayscale is PIL's 'L' conversion (ITU-R 601-2 luma in 16-bit
fixed point) copied to three channels. Randomness comes from an explicit
numpy Generator, so a view is a pure function of its seed.

`augment_view` composes them as MoCo v2's `aug_plus` list
(facebookresearch/moco@7397dfe `main_moco.py:328-338`) or BYOL's view
presets (deepmind-research@f5de0ed `byol/utils/augmentations.py:27-66`),
chosen by an augmentation config (`config_defaults.view_augmentation`).
"""

import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageFilter
from PIL import ImageOps
import scipy.ndimage


def _pil(image: np.ndarray) -> Image.Image:
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} "
                     f"{image.shape}.")
  return Image.fromarray(image, "RGB")


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
  """Blend with black: trunc(factor * x), clipped to [0, 255]."""
  return np.asarray(ImageEnhance.Brightness(_pil(image)).enhance(factor))


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
  """Blend with the image's mean luma, rounded to an integer."""
  return np.asarray(ImageEnhance.Contrast(_pil(image)).enhance(factor))


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
  """Blend with the image's own luma (PIL's 'L' conversion)."""
  return np.asarray(ImageEnhance.Color(_pil(image)).enhance(factor))


def adjust_hue(image: np.ndarray, factor: float) -> np.ndarray:
  """Shifts PIL's uint8 HSV hue by int(factor * 255), wrapping mod 256.

  Args:
    image: uint8 [H, W, 3].
    factor: hue shift in [-0.5, 0.5] turns.

  Returns:
    uint8 [H, W, 3].
  """
  if not -0.5 <= factor <= 0.5:
    raise ValueError(f"hue factor {factor} is not in [-0.5, 0.5].")
  h, s, v = _pil(image).convert("HSV").split()
  shift = np.int32(factor * 255).astype(np.uint8)  # Negative: wraps.
  h = Image.fromarray(np.asarray(h, np.uint8) + shift, "L")
  return np.asarray(Image.merge("HSV", (h, s, v)).convert("RGB"))


def to_grayscale(image: np.ndarray) -> np.ndarray:
  """PIL 'L' luma (R 299 + G 587 + B 114, fixed point) on 3 channels."""
  luma = np.asarray(_pil(image).convert("L"))
  return np.repeat(luma[..., None], 3, axis=-1)


def color_jitter(rng: np.random.Generator, image: np.ndarray, *,
                 brightness: float, contrast: float, saturation: float,
                 hue: float) -> np.ndarray:
  """torchvision's ColorJitter: four random factors, applied in random order.

  Factors are drawn as `ColorJitter.get_params` does (order permutation
  first, then brightness, contrast, saturation ~ U[max(0, 1 - x), 1 + x],
  hue ~ U[-hue, hue]); an op whose strength is 0 is skipped.

  Args:
    rng: source of randomness.
    image: uint8 [H, W, 3].
    brightness, contrast, saturation: jitter strengths >= 0.
    hue: hue jitter strength in [0, 0.5].

  Returns:
    uint8 [H, W, 3].
  """
  order = rng.permutation(4)
  factors = [rng.uniform(max(0.0, 1.0 - x), 1.0 + x) if x else None
             for x in (brightness, contrast, saturation)]
  factors.append(rng.uniform(-hue, hue) if hue else None)
  ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
  for i in order:
    if factors[i] is not None:
      image = ops[i](image, factors[i])
  return image


def pil_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """PIL's `ImageFilter.GaussianBlur(radius=sigma)` (`moco/loader.py:24-33`)."""
  return np.asarray(_pil(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def gaussian_blur(image: np.ndarray, sigma: float,
                  kernel_size: float) -> np.ndarray:
  """BYOL's separable Gaussian blur (`augmentations.py:133-151`).

  Taps exp(-x^2 / (2 sigma^2)) for x in [-r, r], r = int(kernel_size / 2),
  normalised to sum 1; zero padding ('SAME' convolution, so borders darken
  as in the reference); rounded back to uint8.

  Args:
    image: uint8 [H, W, 3].
    sigma: standard deviation in pixels.
    kernel_size: nominal kernel size (the reference: view height / 10).

  Returns:
    uint8 [H, W, 3].
  """
  radius = int(kernel_size / 2)
  x = np.arange(-radius, radius + 1, dtype=np.float32)
  taps = np.exp(-x**2 / np.float32(2.0 * sigma**2))
  taps /= taps.sum()
  out = image.astype(np.float32)
  for axis in (1, 0):  # Horizontal, then vertical, as the reference.
    out = scipy.ndimage.correlate1d(out, taps, axis=axis, mode="constant",
                                    cval=0.0)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def solarize(image: np.ndarray, threshold: int = 128) -> np.ndarray:
  """Inverts pixels >= threshold (PIL `ImageOps.solarize`); 128 on uint8 is
  BYOL's `x < 0.5 ? x : 1 - x` on [0, 1] (`augmentations.py:434-439`)."""
  return np.asarray(ImageOps.solarize(_pil(image), threshold))


def hflip(image: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(image[:, ::-1])


def augment_view(rng: np.random.Generator, image: np.ndarray,
                 aug: ml_collections.ConfigDict) -> np.ndarray:
  """Colour jitter, grayscale, blur, solarize, flip; each with its prob.

  The order is MoCo v2's (`main_moco.py:328-338`); BYOL flips first
  (`augmentations.py:88-98`), which gives the same image because every op
  here is pointwise or a symmetric filter.

  Args:
    rng: source of randomness.
    image: uint8 [H, W, 3] crop.
    aug: a `config_defaults.view_augmentation` config: jitter_prob,
      brightness, contrast, saturation, hue, grayscale_prob, blur_prob,
      blur_sigma (min, max), blur_kernel_fraction (0: PIL radius-sigma blur
      as MoCo; > 0: BYOL's Gaussian with kernel size fraction * height),
      solarize_prob, flip_prob.

  Returns:
    uint8 [H, W, 3].
  """
  if rng.random() < aug.jitter_prob:
    image = color_jitter(rng, image, brightness=aug.brightness,
                         contrast=aug.contrast, saturation=aug.saturation,
                         hue=aug.hue)
  if rng.random() < aug.grayscale_prob:
    image = to_grayscale(image)
  if rng.random() < aug.blur_prob:
    sigma = rng.uniform(*aug.blur_sigma)
    if aug.blur_kernel_fraction > 0:
      image = gaussian_blur(image, sigma,
                            aug.blur_kernel_fraction * image.shape[0])
    else:
      image = pil_gaussian_blur(image, sigma)
  if rng.random() < aug.solarize_prob:
    image = solarize(image)
  if rng.random() < aug.flip_prob:
    image = hflip(image)
  return image
