r"""LIIR: locality-aware inter- and intra-video reconstruction (draft).

Li et al., CVPR 2022; recipe of the unofficial shasha521/LIIR_pytorch@21c7ba5
(README, `main_dis.py`): YouTube-VOS train_all_frames, frame pairs at
intervals {2, 5, 8} (p .4/.4/.2), 256 x 256 Lab, colour dropout; ResNet-18
without max pool at stride 4 (layer4 width 256) with a learnable position
embedding; L4 (13 x 13 window) + 0.5 L8 (7 x 7, queue of 960 momentum keys)
+ L_compact; Adam, batch 12. Published (unofficial repo): 72.2 J&F on
DAVIS-17 val with --usemomen --compact (paper [unverified]: 72.1).

Its README trains in two runs: (1) APE (+ compact, + semantic) at lr 1e-3
for 30 epochs of 5,800 steps (x0.5 at 400k, 600k, 800k, 1M samples);
(2) --usemomen --compact at lr 1e-4 for 5 epochs from (1), conv_semantic
copied to conv_semantic_k and the queue reset. This config is run (2)'s
objective with run (1)'s schedule; the warm start from run (1) needs the
method/evaluation seam (init_from) that is not there yet.

Evaluation: label propagation on LIIR's 64-d stride-4 features
(methods/liir.py `encoder`): the CRW protocol by default, LIIR/MAST's own
window protocol with `--config.evals.davis.protocol=liir`
(evals/window_propagation.py).

The ablation of the reference's README (APE / +compact / +inter / +both,
66.9 / 69.0 / 69.9 / 72.2 on DAVIS-17) is four overrides of
`liir.inter_video` and `liir.compactness`; `liir.position_embedding` drops
the embedding, `liir.position_shift` ('none', 'roll', 'permute') shifts it
on the inter-video side:
  --config.liir.inter_video=False --config.liir.compactness=False  # APE
  --config.liir.inter_video=False                                  # +compact
  --config.liir.compactness=False                                  # +inter
  (defaults)                                                       # +both

  python -m corrjax.main --config=configs/liir.py \
      --config.data.root=/data/youtube-vos/train_all_frames/JPEGImages \
      --config.evals.davis.root=/data/DAVIS \
      --config.evals.davis_liir.root=/data/DAVIS
  python -m corrjax.main --config=configs/liir.py:smoke

  # CPU-sized run on the DAVIS-2016 train frames of $CORRJAX_DATA:
  python -m corrjax.main --config=configs/liir.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016

  # Run (2) of the README, warm-started from run (1)'s workdir:
  python -m corrjax.main --config=configs/liir.py:stage2 \
      --config.model_init.path=workdir/liir --config.data.root=...

Arguments (comma-separated): smoke, stage2, davis2016.
"""

from corrjax import config_defaults as cd
from corrjax.data import frame_pairs

_STEPS_PER_EPOCH, _EPOCHS, _BATCH = 5_800, 30, 12


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, stage2=False, davis2016=False)
  c = cd.base(method="liir", total_steps=_EPOCHS * _STEPS_PER_EPOCH,
              log_every_steps=100, checkpoint_every_steps=5_000)
  c.liir = dict(
      # The paper's switches: the position embedding, its shift on the
      # inter-video side, L8 with the queue (`--usemomen`), L_compact
      # (`--compact`).
      position_embedding=True,
      inter_video=True,
      compactness=True,
      momentum=0.999,  # `--enc_mo`.
      queue_size=960,  # bsize 12 * factor 80 (`colorizer_momen.py:80`).
      # 'roll' or 'permute': the paper's shifting (corrjax's choices,
      # models/liir.py shift_embedding); the public code has none.
      position_shift="none",
      inter_weight=0.5,  # `main_dis.py:244` (when inter_video).
      compact_weight=1.0,  # When compactness.
      equalize=True,  # The reference's min_len over the batch.
  )
  # lr x0.5 once more than 400k, 600k, 800k, 1M samples have been seen
  # (`main_dis.py:290-299`): 0-based step floor(T / 12) + 1.
  c.optim = dict(frozen=(), name="adam", learning_rate=1e-3, weight_decay=0.0,
                 momentum=0.9, schedule="multistep", warmup_steps=0,
                 gamma=0.5, factors=(),
                 milestones=tuple(t // _BATCH + 1 for t in (
                     400_000, 600_000, 800_000, 1_000_000)))
  _set_model(c, width=64, widths=(64, 128, 256, 256), pe_size=(128, 128),
             match_dim=64, semantic_dim=128)
  c.data = frame_pairs.pair_data(batch_size=_BATCH)
  # The CRW protocol and LIIR's own (evals/window_propagation.py).
  c.evals = cd.evals(davis=cd.vos_eval(source="davis"),
                     davis_liir=cd.vos_eval(source="davis", protocol="liir"))
  if arg.stage2:
    # README run (2): --usemomen --compact --lr 1e-4 --epochs 5 --pretrain
    # run (1). Loading copies conv_semantic into conv_semantic_k and starts
    # with an empty queue (`main_dis.py:93-99`): the momentum head is
    # copied from the run's params, the queue is not copied at all.
    c.model_init = cd.model_init(subtrees=(
        "params", "batch_stats", "extra/momentum=params/conv_semantic"))
    c.optim.learning_rate = 1e-4
    c.total_steps = 5 * _STEPS_PER_EPOCH
    # The momentum run's factors x(1, .9, .75, .5, .25, .125, .0625) after
    # 55k, 85k, 135k, 175k, 250k, 300k samples (`main_dis.py:273-287`).
    c.optim.factors = (0.9, 0.75, 0.5, 0.25, 0.125, 0.0625)
    c.optim.milestones = tuple(t // _BATCH + 1 for t in (
        55_000, 85_000, 135_000, 175_000, 250_000, 300_000))
  if arg.davis2016:
    # The 30 DAVIS-2016 train sequences (240p) of $CORRJAX_DATA, scored on
    # the 20 val ones; sized for 2 shared CPU cores (~4 s a step): a
    # quarter-width net on 128 px pairs, batch 8, queue of 64 (as
    # configs/fc.py:davis2016).
    _set_model(c, width=16, widths=(16, 32, 64, 64), pe_size=(64, 64),
               match_dim=64, semantic_dim=64)
    c.data.update(pattern="JPEGImages/240p/*/*.jpg", size=128, batch_size=8,
                  pairs_per_epoch=0, num_threads=2, prefetch=2)
    c.liir.queue_size = 64
    c.optim.milestones = ()
    c.total_steps = 200
    c.log_every_steps = 10
    c.checkpoint_every_steps = 50
    c.evals = cd.evals(
        davis=cd.vos_eval(source="davis", crop_size=320),
        davis_liir=cd.vos_eval(source="davis", crop_size=320,
                               protocol="liir"))
  if arg.smoke:
    _set_model(c, width=4, widths=(4, 8, 8, 8), pe_size=(32, 32),
               match_dim=8, semantic_dim=8, arch="resnet10")
    c.liir.queue_size = 8
    c.data = frame_pairs.pair_data(
        source="synthetic", size=64, batch_size=4, num_threads=2,
        prefetch=2, pairs_per_epoch=0)
    c.data.synthetic.update(num_videos=4, num_frames=12, height=64, width=64)
    c.evals = cd.smoke_evals()
    c.total_steps = 4
    c.log_every_steps = 2
    c.checkpoint_every_steps = 2
  return c


def _set_model(c, arch="resnet18", **sizes):
  """`c.model`: the stride-4 ResNet-18 (ResNet-10 for `:smoke`) of these
  sizes; `use_pe` follows `c.liir.position_embedding` (a reference, so
  overrides carry over)."""
  c.model = dict(arch=arch, strides=(1, 2, 1, 1), dtype="float32",  # Or bf16.
                 **sizes)
  c.model.use_pe = c.liir.get_ref("position_embedding")
