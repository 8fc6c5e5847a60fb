r"""CRW: space-time correspondence as a contrastive random walk.

Jabri et al., NeurIPS 2020; recipe of ajabri/videowalk@047f3f4, README train
command `--frame-aug grid --dropout 0.1 --clip-len 4 --temp 0.05 --model-type
scratch --batch-size 20 --lr 0.0001`: Kinetics-400 at 8 fps, clips of 4
frames, each frame a RandomResizedCrop(256, scale (0.8, 0.95), ratio (0.7,
1.3)) cut into 7x7 = 49 patches of 64 px (stride 32), each jittered by
RandomResizedCrop(64, scale (0.7, 0.9)), CIFAR normalisation
(`utils/augs.py`); ResNet-18 with reflect padding, layer3/layer4 stride 1,
layer4 kept; node = mean-pooled 512-d map -> Linear(512, 128) -> L2
(`model.py:42-51,83-114`); edge dropout 0.1, palindromes of 4 and 6 steps,
temperature 0.05; Adam lr 1e-4, no weight decay (`train.py:157`).
Temperature: the README's command uses 0.05; its "Fixed a bug" section
(present until commit c3e3d7c) says the fixed walk "seems to require a lower
softmax temperature ... 0.01 - 0.05" than the paper's 0.07.
Published: 0.676 J&F on DAVIS-17 val (README, `pretrained.pth`).

Length: 25 epochs (`utils/arguments.py:89`) of RandomClipSampler with 5
clips per video: with ~240k Kinetics-400 train videos, ~60k steps per epoch,
1.5M steps; set --config.total_steps=25 * clips // 20 for your download.
MultiStepLR's x0.3 at epoch 20 (`train.py:159-161`, milestones [20, 30, 40]
epochs, stepped per iteration) is `optim.schedule='multistep'`. Not
reproduced: DataParallel's per-GPU BatchNorm statistics (here they are over
the global batch).

  # Kinetics-400 (train_256 videos), evaluated on a DAVIS-2017 root:
  python -m corrjax.main --config=configs/crw.py \
      --config.data.root=/data/kinetics/train_256 \
      --config.evals.davis.root=/data/DAVIS
  # CPU demo: the Kinetics clip, evaluated on 4 DAVIS-2016 val videos
  # (~13 min on 2 cores; a run-through of the pipeline: 200 steps on one clip
  # took the loss from 3.9 = log 49 to 2.1 but scored J&F 0.19 vs 0.30 for
  # the random init):
  python -m corrjax.main --config=configs/crw.py:kinetics_demo \
      --config.data.root=$CORRJAX_DATA/videos \
      --config.evals.davis.root=$CORRJAX_DATA/davis2016
  # CPU demo on the DAVIS-2016 train frames, same evaluation:
  python -m corrjax.main --config=configs/crw.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016
  # Tiny CPU run used by the tests:
  python -m corrjax.main --config=configs/crw.py:smoke

Arguments (comma-separated): smoke, kinetics_demo, davis2016.
"""

from corrjax import config_defaults as cd

_EPOCHS, _STEPS_PER_EPOCH = 25, 60_000


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, kinetics_demo=False, davis2016=False)
  c = cd.base(method="crw", total_steps=_EPOCHS * _STEPS_PER_EPOCH,
              log_every_steps=100, checkpoint_every_steps=5_000)
  c.model = dict(arch="resnet18", width=64, strides=(1, 2, 1, 1),
                 padding_mode="reflect", head_depth=0, embed_dim=128,
                 dtype="float32")  # Compute dtype: or 'bfloat16'.
  c.walk = dict(temperature=0.05, edge_dropout=0.1,
                flip=False)  # `--flip`: left-multiplied walks.
  c.optim = dict(frozen=(),  # Regexes of parameter paths kept fixed.
                 name="adam", learning_rate=1e-4, weight_decay=0.0,
                 momentum=0.9,  # sgd only.
                 schedule="multistep", warmup_steps=0, gamma=0.3,
                 milestones=tuple(e * _STEPS_PER_EPOCH for e in (20, 30, 40)))
  c.data = cd.clip_data()
  c.features = cd.trunk_features()
  # DAVIS-2017 val at native 480p, the README's test.py command.
  c.evals = cd.evals(davis=cd.vos_eval(source="davis"))

  if arg.kinetics_demo or arg.davis2016:
    _cpu_demo(c)
  if arg.davis2016:
    # The 30 DAVIS-2016 train sequences (24 fps, 240p): ~8 fps clips.
    c.data.source = "folder"
    c.data.pattern = "JPEGImages/240p/*/*.jpg"
    c.data.frame_stride = 3
  if arg.smoke:
    c.model.arch = "resnet10"
    c.model.width = 8
    c.model.embed_dim = 16
    c.data = cd.clip_data(
        source="synthetic", frame_stride=2, batch_size=8, crop_size=64,
        patch_size=32, patch_stride=16, num_threads=2, prefetch=2,
        synthetic=cd.synthetic_videos(seed=1, num_videos=4, num_frames=12,
                                      size=64))
    c.evals = cd.smoke_evals()
    c.total_steps = 4
    c.log_every_steps = 2
    c.checkpoint_every_steps = 2
  return c


def _cpu_demo(c):
  """Minutes on 2 CPU cores: a narrow net on 128 px crops, 7x7 patches."""
  c.model.width = 16
  c.data.batch_size = 4
  c.data.crop_size = 128
  c.data.patch_size = 32
  c.data.patch_stride = 16  # Still 7x7 = 49 nodes per frame.
  c.data.num_threads = 2
  # DAVIS-2016 val (--config.evals.davis.root, or data.root for
  # davis2016): 4 videos resized to 320x320 (cropSize 320) to keep CPU time
  # in minutes.
  c.evals = cd.evals(davis=cd.vos_eval(
      source="davis", videos="4", crop_size=320, random_init_baseline=True))
  c.total_steps = 200
  c.log_every_steps = 10
  c.checkpoint_every_steps = 100
