"""Building blocks of the configs in configs/ (kept in the package so that
config files load from any working directory)."""

import importlib.util
import os
import sys

import ml_collections as mlc


def make_configs_importable(config_path: str) -> None:
  """Puts the folder above `configs/` on sys.path, so that config files
  import each other (`from configs import fc`) from any working directory."""
  folder = os.path.dirname(os.path.abspath(config_path))
  if os.path.basename(folder) == "configs":
    parent = os.path.dirname(folder)
    if parent not in sys.path:
      sys.path.insert(0, parent)


def load(spec: str) -> mlc.ConfigDict:
  """Loads 'path/to/config.py[:arg]' as --config does (unlocked)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist.")
  make_configs_importable(path)
  name = "corrjax_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """big_vision-style `file.py:a,b=3` arguments.

  A bare word sets a boolean default to True; `key=value` converts value to
  the default's type. Unknown words are rejected.
  """
  parsed = mlc.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; expected one of "
                       f"{sorted(defaults)}.")
    if not _:
      if not isinstance(defaults[key], bool):
        raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
      parsed[key] = True
    elif isinstance(defaults[key], bool):
      parsed[key] = value.lower() in ("1", "true", "yes")
    else:
      parsed[key] = type(defaults[key])(value)
  return parsed


def fine_grained_model(arch: str = "resnet18",
                       width: int = 64) -> mlc.ConfigDict:
  """SFC's FC net: res3/res4 stride 1 (stride 8), 2048 -> 256 heads."""
  return mlc.ConfigDict(dict(
      arch=arch, width=width, strides=(1, 2, 1, 1), padding_mode="zeros",
      zero_init_last_bn=True, projection_hidden_dim=2048,
      prediction_hidden_dim=2048, projection_dim=256,
      dtype="float32"))  # Compute dtype (models/precision.py): or 'bfloat16'.


def synthetic_videos(seed: int, num_videos: int, num_frames: int,
                     size: int) -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(seed=seed, num_videos=num_videos,
                             num_frames=num_frames, height=size, width=size,
                             max_objects=3))


def two_view_data(**overrides) -> mlc.ConfigDict:
  """Two random resized crops of one frame (SFC `code/train.py:34-70`)."""
  c = mlc.ConfigDict(dict(
      source="folder",  # 'folder' (any tree of frames) or 'synthetic'.
      root="",
      pattern="**/*",  # glob under root, e.g. 'JPEGImages/240p/*/*.jpg'.
      synthetic=synthetic_videos(seed=1, num_videos=48, num_frames=12,
                                 size=96),
      batch_size=96,
      crop_size=256,
      crop_scale=(0.0, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      normalization="cifar",
      num_threads=4,
      prefetch=8,
  ))
  c.update(overrides)
  return c


def vos_eval(**overrides) -> mlc.ConfigDict:
  """One VOS benchmark (`config.evals.<name>`): reader and protocol.

  Reader: `source` ('synthetic', 'davis', 'tfds_davis', 'jhmdb', 'vip' or
  'none'), `root` (empty: config.data.root), `split`, `videos` (names or a
  count, see evals/benchmarks.py). Protocol: evals/protocol.py (CRW's DAVIS
  protocol, videowalk README: native 480p).
  """
  c = mlc.ConfigDict(dict(
      source="synthetic",
      root="",  # DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets).
      split="val",
      videos="",  # '' all, '4' the first 4, 'a,b' these, or a list file.
      synthetic=synthetic_videos(seed=2, num_videos=8, num_frames=16,
                                 size=128),
      topk=10, radius=12.0, context=20, temperature=0.05, crop_size=-1,
      # 'liir': LIIR/MAST's inference (evals/window_propagation.py) with
      # these three entries instead of topk, radius, context, temperature.
      protocol="crw", window=14, compact_threshold=0.1, foreground_boost=1.05,
      batch_size=8,  # Frames per feature-extraction call.
      # 'auto': the method's own mask predictor when it has one (Mask-VOS),
      # else label propagation; 'propagation': always label propagation.
      predictor="auto",
      random_init_baseline=False,  # Also score the untrained network.
      write_pngs=True,
      overlay_frames=4,
  ))
  c.update(overrides)
  return c


def pose_eval(**overrides) -> mlc.ConfigDict:
  """Keypoint propagation on JHMDB, PCK (CRW paper settings, videowalk #10).

  `root` holds Rename_Images/ and joint_positions/; `split_file` (optional)
  lists videos in either CRW or UVC column order.
  """
  c = vos_eval(source="jhmdb", topk=10, radius=12.0, context=7,
               temperature=0.05, crop_size=320)
  c.split_file = ""
  c.sigma = 0.5
  c.update(overrides)
  return c


def parsing_eval(**overrides) -> mlc.ConfigDict:
  """Part propagation on VIP, mIoU (context 4, cropSize 560; videowalk #10).

  `root` holds Images/ and Annotations/Category_ids/.
  """
  c = vos_eval(source="vip", topk=10, radius=12.0, context=4,
               temperature=0.05, crop_size=560)
  c.update(overrides)
  return c


# How a ResNet trunk is read for evaluation (methods/trunk.py): layer3 at
# stride 8 with ImageNet statistics (videowalk `code/test.py:45-86`).
TRUNK_FEATURES = dict(num_stages=3, strides=(1, 2, 1, 1),
                      normalization="imagenet")


def trunk_features(**overrides) -> mlc.ConfigDict:
  """`config.features` of the methods evaluated through a ResNet trunk."""
  return mlc.ConfigDict(dict(TRUNK_FEATURES, **overrides))


def evals(**benchmarks) -> mlc.ConfigDict:
  """`config.evals`: named benchmarks, e.g. evals(davis=vos_eval(...))."""
  return mlc.ConfigDict(benchmarks)


def smoke_evals(size: int = 64) -> mlc.ConfigDict:
  """`config.evals` of the :smoke configs: 2 tiny held-out synthetic
  videos, a short protocol (topk 5, context 3); seconds on CPU."""
  return evals(synthetic=vos_eval(
      source="synthetic", context=3, topk=5,
      synthetic=synthetic_videos(seed=2, num_videos=2, num_frames=6,
                                 size=size)))


def model_init(**overrides) -> mlc.ConfigDict:
  """Warm start of a fresh run (not of a resume): see corrjax/warm_start.py.

  `path`: a training workdir (latest checkpoint) or an encoder directory;
  `subtrees`: 'state/path[=source/path]' entries copied from it, e.g.
  'params/encoder' or, from an encoder directory,
  'params/encoder=params', 'batch_stats/encoder=batch_stats'.
  """
  c = mlc.ConfigDict(dict(path="", subtrees=("params", "batch_stats")))
  c.update(overrides)
  return c


def base(**overrides) -> mlc.ConfigDict:
  c = mlc.ConfigDict(dict(
      method="fine_grained",
      seed=0,
      model_init=model_init(),
      total_steps=60_000,
      log_every_steps=50,
      checkpoint_every_steps=1_000,
      keep_checkpoints=3,
      mesh=mlc.ConfigDict(dict(shape=(-1,), axes=("data",))),
      # (regex over '/'-joined state paths, partition spec) pairs.
      sharding_rules=(),
  ))
  c.update(overrides)
  return c


def clip_data(**overrides) -> mlc.ConfigDict:
  """Video clips cut into jittered patch grids (CRW, videowalk
  `code/train.py:86-149`, `code/utils/augs.py`); see data/clips.py."""
  c = mlc.ConfigDict(dict(
      source="video",  # 'video' (files), 'folder' (of frames) or 'synthetic'.
      root="",  # e.g. kinetics/train_256 or DAVIS/JPEGImages/480p.
      # Glob under root; '' picks '**/*.mp4' (video) or '*/*' (folder).
      pattern="",
      index_cache="",  # .npz caching the frame index of video files.
      # Video files: resample to this fps (reference: Kinetics at 8 fps); 0
      # uses frame_stride instead. Folders and synthetic: gap between clip
      # frames (4: ~8 fps from 30 fps YouTube-VOS; use 3 for 24 fps DAVIS).
      frame_rate=8.0,
      frame_stride=4,
      clip_len=4,
      clips_per_video=5,  # RandomClipSampler, per video per epoch.
      synthetic=synthetic_videos(seed=1, num_videos=16, num_frames=24,
                                 size=96),
      batch_size=20,
      crop_size=256,
      crop_scale=(0.8, 0.95),
      crop_ratio=(0.7, 1.3),
      patch_size=64,
      patch_stride=32,
      patch_scale=(0.7, 0.9),
      patch_ratio=(3 / 4, 4 / 3),
      normalization="cifar",  # Applied by the model (videowalk augs.py:10).
      num_threads=4,
      prefetch=8,
  ))
  c.update(overrides)
  return c


def view_augmentation(**overrides) -> mlc.ConfigDict:
  """Photometric/flip part of one image view (`data/color_augment.py`).

  Defaults: MoCo v2's `aug_plus` (facebookresearch/moco `main_moco.py:
  328-338`): jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, PIL blur
  sigma U[0.1, 2] p 0.5, flip p 0.5, no solarize.
  """
  c = mlc.ConfigDict(dict(
      jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4,
      hue=0.1, grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0),
      # 0: PIL GaussianBlur(radius=sigma) (MoCo); > 0: Gaussian kernel of
      # this fraction of the view size, zero padded (BYOL: 0.1).
      blur_kernel_fraction=0.0,
      solarize_prob=0.0, flip_prob=0.5))
  c.update(overrides)
  return c


def image_views_data(**overrides) -> mlc.ConfigDict:
  """Two augmented views of one image (`data/image_views.py`)."""
  c = mlc.ConfigDict(dict(
      source="folder",  # 'folder', 'tfds' or 'synthetic'.
      root="",  # Image folder; for 'tfds' the tfds data_dir ('' = default).
      pattern="**/*",  # glob under root, e.g. 'train/*/*.JPEG'.
      tfds_name="imagenet2012",
      tfds_split="train",
      synthetic=synthetic_videos(seed=1, num_videos=48, num_frames=12,
                                 size=96),
      batch_size=256,
      crop_size=224,
      crop_scale=(0.2, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      normalization="imagenet",
      view1=view_augmentation(),
      view2=view_augmentation(),
      num_threads=4,
      prefetch=8,
  ))
  c.update(overrides)
  return c


def image_ssl_model(arch: str = "resnet50", width: int = 64,
                    **overrides) -> mlc.ConfigDict:
  """`models/image_ssl.py`: standard-stride ResNet + MLP heads (MoCo v2)."""
  c = mlc.ConfigDict(dict(
      arch=arch, width=width, strides=(1, 2, 2, 2), padding_mode="zeros",
      zero_init_last_bn=False, projection_hidden_dim=2048, projection_dim=128,
      projection_bn=False, projection_out_bias=True, prediction_hidden_dim=0,
      dtype="float32"))  # Compute dtype (models/precision.py).
  c.update(overrides)
  return c
