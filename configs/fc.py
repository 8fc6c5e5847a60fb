r"""SFC's fine-grained correspondence network (FC), the paper's recipe.

Hu et al., "Semantic-Aware Fine-Grained Correspondence", ECCV 2022; recipe of
Alxead/SFC `code/train.py`, `code/utils/arguments.py`: ResNet-18 with
res3/res4 stride 1 (32x32 features of 256x256 crops), 2048 -> 256 projector
and predictor, two random resized crops (scale [0, 1], ratio [3/4, 4/3]) of
the same frame, positive radius 0.5 cell diagonals, symmetric loss, Adam lr
1e-3, wd 0, batch 96, 60k steps, EMA 0.99 -> 1 (cosine).
Published: FC alone 0.680 J&F on DAVIS-17 val (SFC repo, k 10, r 12, t 0.05).

  # YouTube-VOS (the paper's data), or any tree of frames:
  python -m corrjax.main --config=configs/fc.py \
      --config.data.root=/data/ytvos/train_all_frames/JPEGImages
  # DAVIS-2016 train frames, evaluated on DAVIS-2016 val:
  python -m corrjax.main --config=configs/fc.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016
  # Tiny CPU run used by the tests:
  python -m corrjax.main --config=configs/fc.py:smoke

  # Keypoint propagation (PCK) of a trained workdir on JHMDB:
  python -m corrjax.main --config=configs/fc.py:davis2016,jhmdb --mode=eval \
      --config.data.root=$CORRJAX_DATA/davis2016 \
      --config.evals.jhmdb.root=$CORRJAX_DATA/jhmdb_sample --workdir=...

Arguments (comma-separated): smoke, davis2016 (CPU-sized; with `paper`:
the paper's network, batch and crops), demo, jhmdb.
"""

from corrjax import config_defaults as cd


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, davis2016=False, demo=False,
                     jhmdb=False, paper=False)
  c = cd.base(total_steps=60_000)
  c.model = cd.fine_grained_model("resnet18")
  c.loss = dict(radius=0.5)
  c.ema = dict(base_momentum=0.99)
  c.optim = dict(frozen=(),  # Regexes of parameter paths kept fixed.
                 name="adam", learning_rate=1e-3, weight_decay=0.0,
                 momentum=0.9,  # sgd only.
                 schedule="constant", warmup_steps=0)
  c.data = cd.two_view_data()
  c.features = cd.trunk_features()
  c.evals = cd.evals()

  if arg.davis2016:
    # Train on the 30 train sequences (240p), score the 20 val ones. Sized
    # for a 24 GB CPU machine (add `paper` for the paper's network, batch
    # and crops: an accelerator's worth of memory).
    c.data.pattern = "JPEGImages/240p/*/*.jpg"
    c.evals = cd.evals(davis=cd.vos_eval(source="davis", crop_size=320))
    c.total_steps = 2_000
    if not arg.paper:
      _cpu_sized(c)
  if arg.jhmdb:
    # Keypoint propagation (PCK) on a JHMDB root (--config.evals.jhmdb.root),
    # e.g. after training: --mode=eval.
    c.evals = cd.evals(jhmdb=cd.pose_eval())
  if arg.demo or arg.smoke:
    _demo(c)
  if arg.smoke:
    c.model.arch = "resnet10"
    c.model.width = 8
    c.model.projection_hidden_dim = c.model.prediction_hidden_dim = 16
    c.model.projection_dim = 8
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


def _cpu_sized(c):
  """A width-16 net on 128 px crops, batch 16: ~1 GB, 2 CPU cores."""
  c.model.width = 16
  c.model.projection_hidden_dim = c.model.prediction_hidden_dim = 256
  c.model.projection_dim = 64
  c.data.batch_size = 16
  c.data.crop_size = 128
  c.data.num_threads = 2


def _demo(c):
  """A few minutes on 2 CPU cores, on the embedded synthetic videos."""
  c.data.source = "synthetic"
  _cpu_sized(c)
  c.data.crop_size = 64
  c.evals = cd.evals(synthetic=cd.vos_eval(source="synthetic",
                                           random_init_baseline=True))
  c.total_steps = 800
  c.log_every_steps = 10
  c.checkpoint_every_steps = 200
