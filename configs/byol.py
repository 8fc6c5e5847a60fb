r"""Global BYOL: an image-level semantic network for SFC's fusion.

Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020; architecture, loss,
EMA and views of google-deepmind/deepmind-research@f5de0ed `byol/`:
ResNet-50 (zero-initialised last BN of each block, as haiku's), projector
and predictor Linear(4096) - BN - ReLU - Linear(256, no bias)
(`utils/networks.py:25-45`, `configs/byol.py:39-43`), loss 2 - 2 cos,
symmetrised (`utils/helpers.py:109-112`, `byol_experiment.py:243-250`),
target EMA with tau from 0.996 to 1 on a cosine (`configs/byol.py:23`,
`utils/schedules.py:20-24`), global BN, ImageNet normalisation, 10 warmup
epochs then cosine lr (`configs/byol.py:62-65`, `utils/schedules.py:27-43`).
Views (`utils/augmentations.py:27-66`): RandomResizedCrop(224, scale (0.08,
1)), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, Gaussian
blur (kernel 224 / 10, sigma U[0.1, 2]) p 1.0 / 0.1, solarize p 0 / 0.2.
Published: 74.3 ImageNet linear top-1 (1000 epochs, batch 4096, LARS).

Optimiser: corrjax's optim has no LARS, so this config uses SGD with
SimSiam's large-batch-free recipe (facebookresearch/simsiam `main_simsiam.py`:
lr 0.05 x batch / 256, momentum 0.9, wd 1e-4 on kernels) at batch 512 for
200 epochs (MoCo v2's budget). The reference's LARS (lr 0.2 x batch / 256,
wd 1.5e-6, eta 1e-3, biases and BN excluded) needs an optim 'lars' entry.
Colour jitter follows torchvision's ops (`data/color_augment.py`), not the
reference's TF-style ones (additive brightness); crops are resized
bilinearly (the reference: bicubic).

  python -m corrjax.main --config=configs/byol.py \
      --config.data.root=/data/imagenet/train
  python -m corrjax.main --config=configs/byol.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016
  python -m corrjax.main --config=configs/byol.py:smoke

Arguments (comma-separated): smoke, davis2016.
"""

from corrjax import config_defaults as cd

_IMAGENET_TRAIN_IMAGES = 1_281_167


def _views(c):
  """BYOL's asymmetric view presets on top of MoCo v2's defaults."""
  common = dict(saturation=0.2, blur_kernel_fraction=0.1)
  c.data.view1 = cd.view_augmentation(blur_prob=1.0, solarize_prob=0.0,
                                      **common)
  c.data.view2 = cd.view_augmentation(blur_prob=0.1, solarize_prob=0.2,
                                      **common)


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, davis2016=False)
  batch_size, epochs = 512, 200
  steps_per_epoch = _IMAGENET_TRAIN_IMAGES // batch_size
  c = cd.base(method="byol", total_steps=epochs * steps_per_epoch,
              log_every_steps=100, checkpoint_every_steps=5_000)
  c.model = cd.image_ssl_model(
      "resnet50", zero_init_last_bn=True, projection_hidden_dim=4096,
      projection_dim=256, projection_bn=True, projection_out_bias=False,
      prediction_hidden_dim=4096)
  c.ema = dict(base_momentum=0.996)
  c.optim = dict(frozen=(),  # Regexes of parameter paths kept fixed.
                 name="sgd", learning_rate=0.05 * batch_size / 256,
                 weight_decay=1e-4, momentum=0.9, schedule="cosine",
                 warmup_steps=10 * steps_per_epoch)
  c.data = cd.image_views_data(batch_size=batch_size, crop_size=224,
                               crop_scale=(0.08, 1.0))
  _views(c)
  c.features = cd.trunk_features()
  c.evals = cd.evals()

  if arg.davis2016:
    # DAVIS-2016 train frames (240p), ResNet-18 at 112 px; val at 480p.
    c.model.arch = "resnet18"
    c.model.projection_hidden_dim = c.model.prediction_hidden_dim = 1024
    c.model.projection_dim = 128
    c.data.pattern = "JPEGImages/240p/*/*.jpg"
    c.data.batch_size = 32
    c.data.crop_size = 112
    c.data.num_threads = 2
    c.optim.learning_rate = 0.05 * c.data.batch_size / 256
    c.optim.warmup_steps = 20
    c.evals = cd.evals(davis=cd.vos_eval(source="davis"))  # data.root
    c.total_steps = 300
    c.log_every_steps = 10
    c.checkpoint_every_steps = 100
  if arg.smoke:
    c.model.arch = "resnet10"
    c.model.width = 8
    c.model.projection_hidden_dim = c.model.prediction_hidden_dim = 16
    c.model.projection_dim = 8
    c.data.source = "synthetic"
    c.data.batch_size = 8
    c.data.crop_size = 64
    c.data.num_threads = 2
    c.data.synthetic = cd.synthetic_videos(seed=1, num_videos=4,
                                           num_frames=4, size=64)
    c.optim.warmup_steps = 1
    c.evals = cd.smoke_evals()
    c.total_steps = 4
    c.log_every_steps = 2
    c.checkpoint_every_steps = 2
  return c
