r"""MoCo v2: the image-level semantic network that SFC fuses with FC.

Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020;
recipe of facebookresearch/moco@7397dfe (`main_moco.py`, `moco/builder.py`,
`moco/loader.py`; README: MoCo v2 = `--mlp --moco-t 0.2 --aug-plus --cos`):
ResNet-50, MLP head 2048 -> 2048 -> 128 (`builder.py:34-41`), queue of
K = 65536 keys (`main_moco.py:156-161`), momentum 0.999 (`:162-167`),
T = 0.2, SGD lr 0.03 x batch / 256 (`:78-86`, README), momentum 0.9 (`:95`),
wd 1e-4 on every parameter (`:97-105,291-296`), cosine schedule
(`:488-497`), batch 256 (`:68-77`), 200 epochs (`:58-60`) of ImageNet
(1,281,167 images // 256 = 5004 steps per epoch, `drop_last`, `:366`);
views: RandomResizedCrop(224, scale (0.2, 1)), ColorJitter(0.4, 0.4, 0.4,
0.1) p 0.8, RandomGrayscale p 0.2, GaussianBlur sigma U[0.1, 2] p 0.5,
horizontal flip, ImageNet normalisation (`:323-338`, `loader.py:24-33`).
Published: 67.7 ImageNet linear top-1 (README, 200 epochs, 8 V100, 53 h).

Differences, by design: the cosine is per step, not per epoch
(`adjust_learning_rate` holds the lr within an epoch); BN statistics of
queries and shuffled keys use groups of 32 examples on any device count
(`methods/moco.py`); images are sampled per epoch from a seeded
permutation and epochs may straddle a batch.

  # ImageNet as an image folder (1000 class folders of JPEGs):
  python -m corrjax.main --config=configs/moco.py \
      --config.data.root=/data/imagenet/train
  # ImageNet from tfds (prepared as array_record; root = tfds data_dir):
  python -m corrjax.main --config=configs/moco.py --config.data.source=tfds \
      --config.data.root=gs://my-bucket/tensorflow_datasets
  # DAVIS-2016 train frames, CPU-sized, evaluated on DAVIS-2016 val:
  python -m corrjax.main --config=configs/moco.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016
  # Tiny CPU run used by the tests:
  python -m corrjax.main --config=configs/moco.py:smoke

For another dataset set --config.total_steps=epochs * images // batch and
keep --config.optim.learning_rate=0.03 * batch / 256.

Arguments (comma-separated): smoke, davis2016.
"""

from corrjax import config_defaults as cd

_IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, davis2016=False)
  batch_size, epochs = 256, 200
  c = cd.base(method="moco",
              total_steps=epochs * (_IMAGENET_TRAIN_IMAGES // batch_size),
              log_every_steps=100, checkpoint_every_steps=5_000)
  c.model = cd.image_ssl_model("resnet50", projection_hidden_dim=2048,
                               projection_dim=128)
  c.moco = dict(queue_size=65_536, momentum=0.999, temperature=0.2,
                # Examples per BN group: the reference's 256 / 8 GPUs.
                bn_group_size=32,
                # torch SGD decays BN and bias parameters too.
                decay_all_parameters=True)
  c.optim = dict(frozen=(),  # Regexes of parameter paths kept fixed.
                 name="sgd", learning_rate=0.03 * batch_size / 256,
                 weight_decay=1e-4, momentum=0.9, schedule="cosine",
                 warmup_steps=0)
  c.data = cd.image_views_data(batch_size=batch_size, crop_size=224,
                               crop_scale=(0.2, 1.0))
  c.features = cd.trunk_features()
  c.evals = cd.evals()

  if arg.davis2016:
    # The 30 DAVIS-2016 train sequences (240p, 2079 frames), CPU-sized:
    # ResNet-18 at 112 px, a queue smaller than the data; val at 480p.
    c.model = cd.image_ssl_model("resnet18", projection_hidden_dim=512,
                                 projection_dim=128)
    c.data.pattern = "JPEGImages/240p/*/*.jpg"
    c.data.batch_size = 32
    c.data.crop_size = 112
    c.data.num_threads = 2
    c.moco.queue_size = 1024
    c.moco.bn_group_size = 8
    c.optim.learning_rate = 0.03 * c.data.batch_size / 256
    c.evals = cd.evals(davis=cd.vos_eval(source="davis"))  # data.root
    c.total_steps = 300
    c.log_every_steps = 10
    c.checkpoint_every_steps = 100
  if arg.smoke:
    c.model = cd.image_ssl_model("resnet10", width=8, projection_hidden_dim=16,
                                 projection_dim=8)
    c.moco.queue_size = 16
    c.moco.bn_group_size = 4
    c.data.source = "synthetic"
    c.data.batch_size = 8
    c.data.crop_size = 64
    c.data.num_threads = 2
    c.data.synthetic = cd.synthetic_videos(seed=1, num_videos=4,
                                           num_frames=4, size=64)
    c.evals = cd.smoke_evals()
    c.total_steps = 4
    c.log_every_steps = 2
    c.checkpoint_every_steps = 2
  return c
