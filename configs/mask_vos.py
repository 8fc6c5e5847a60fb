r"""Mask-VOS: unified mask embedding and correspondence learning.

Li et al., CVPR 2023 (§3.3): ResNet-18 E (output stride 8, D = 128 keys),
V (D' = 512), decoder D; 256 x 256 crops, N = 2 references and a query per
video for L_seg, batch 16, Adam lr 1e-4 for 300 epochs of
L_corr = 0.1 L_short + 0.5 L_long, then 100 epochs of the full loss
(Eq. 16) at 1e-5 with pseudo masks re-clustered every 10 epochs (k-means
M = 5, 100 EM steps, 3D PE, clusters over 40% of the video dropped).
Published: 74.5 J&F on DAVIS-17 val (ResNet-18, Table 4a). The paper halves
the lr every 100 epochs of phase 1; here it is constant (a 'multistep'
optim.schedule with absolute milestones can add it).

Epochs are scaled to the data: one epoch = one example per training video
(YouTube-VOS 2018 train: 3471 videos / 16 = ~217 steps). The whole
schedule runs in one resumable run (methods/mask_vos_rounds.py); pseudo
masks of round k go to <workdir>/pseudo_masks/round_<k>/.

  # YouTube-VOS (or any tree of frame folders), evaluated on DAVIS:
  python -m corrjax.main --config=configs/mask_vos.py \
      --config.data.root=/data/ytvos/train/JPEGImages \
      --config.evals.davis.root=/data/DAVIS \
      --config.evals.davis_propagation.root=/data/DAVIS
  # CPU demo on the DAVIS-2016 train frames, DAVIS-2016 val subset:
  python -m corrjax.main --config=configs/mask_vos.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016
  # Pseudo masks of the latest checkpoint (offline job):
  python -m corrjax.main --config=configs/mask_vos.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016 --mode=pseudo_labels
  # Tiny CPU run used by the tests:
  python -m corrjax.main --config=configs/mask_vos.py:smoke

Arguments (comma-separated): smoke, davis2016, arch=resnet18|resnet50.
"""

import ml_collections as mlc

from corrjax import config_defaults as cd

_STEPS_PER_EPOCH = 217  # 3471 YouTube-VOS videos / batch 16.


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, davis2016=False, arch="resnet18")
  e = _STEPS_PER_EPOCH
  c = cd.base(method="mask_vos", total_steps=400 * e, log_every_steps=100,
              checkpoint_every_steps=5 * e)
  c.model = mlc.ConfigDict(dict(arch=arg.arch, width=64, key_dim=128,
                                value_dim=512,
                                decoder_widths=(512, 256, 128),
                                dtype="float32"))  # Or 'bfloat16'.
  # Eq. 16's weights: L = seg_weight L_seg + short L_short + long L_long.
  c.loss = mlc.ConfigDict(dict(temperature=1.0, seg_weight=1.0,
                               short_weight=0.1, long_weight=0.5))
  # Phase 1 (L_corr only) then full-loss rounds, re-clustered each round.
  c.schedule = mlc.ConfigDict(dict(corr_steps=300 * e,
                                   recluster_every=10 * e,
                                   seg_learning_rate=1e-5))
  # Eq. 4: M clusters, EM steps, 3D PE, the 40% drop; E sees the frames
  # resized to `size` (multiples of 8); k-means runs on `videos_per_call`
  # videos at once; pictures of the first `grid_videos` videos.
  c.clustering = mlc.ConfigDict(dict(
      num_clusters=5, num_steps=100, pe_dim=48, pe_scale=1.0,
      max_fraction=0.4, size=(256, 448), videos_per_call=4, frame_batch=8,
      grid_videos=4))
  # Alg. 1: frame 0 + `context` previous frames (evals' protocol.context),
  # R = `rounds` refinement rounds.
  c.inference = mlc.ConfigDict(dict(rounds=2))
  c.optim = mlc.ConfigDict(dict(frozen=(), name="adam", learning_rate=1e-4,
                                weight_decay=0.0, momentum=0.9,
                                schedule="constant", warmup_steps=0))
  c.data = mlc.ConfigDict(dict(
      source="folder",  # 'folder' (one video per folder) or 'synthetic'.
      root="", pattern="*/*",  # Frame files: glob under root.
      synthetic=cd.synthetic_videos(seed=1, num_videos=16, num_frames=12,
                                    size=96),
      masks_dir="",  # Set per round by the schedule.
      batch_size=16, crop_size=256, crop_scale=(0.6, 1.0),
      num_refs=2,  # N.
      num_objects=5,  # Pseudo objects decoded per video (<= M).
      long_gap=5,  # |t - t'| >= 5 for L_long.
      normalization="imagenet", num_threads=4, prefetch=8))
  # The decoder with R refinement rounds; E alone by label propagation.
  c.evals = cd.evals(
      davis=cd.vos_eval(source="davis"),
      davis_propagation=cd.vos_eval(source="davis", predictor="propagation"))
  if arg.davis2016:
    _davis2016(c)
  if arg.smoke:
    c.model.update(arch="resnet10", width=4, key_dim=8, value_dim=16,
                   decoder_widths=(16, 8, 8))
    c.data.update(source="synthetic", batch_size=4, crop_size=32,
                  num_objects=3, num_threads=2, prefetch=2,
                  synthetic=cd.synthetic_videos(seed=1, num_videos=3,
                                                num_frames=8, size=32))
    c.clustering.update(num_clusters=3, num_steps=10, pe_dim=6, size=(32, 32),
                        videos_per_call=2, frame_batch=4, grid_videos=1)
    # One correspondence step, then one clustered full-loss round of 2
    # steps (tests/methods/mask_vos_schedule_test.py runs several rounds).
    c.schedule.update(corr_steps=1, recluster_every=2,
                      seg_learning_rate=1e-4)
    c.evals = cd.smoke_evals(size=32)
    c.total_steps = 3
    c.log_every_steps = 1
    c.checkpoint_every_steps = 1
  return c


def _davis2016(c):
  """A short CPU run on the 30 DAVIS-2016 train sequences (240p)."""
  c.model.update(width=16, key_dim=64, value_dim=64,
                 decoder_widths=(64, 32, 16))
  c.data.update(pattern="JPEGImages/240p/*/*.jpg", batch_size=4,
                crop_size=128, num_threads=2, prefetch=4)
  c.clustering.update(size=(120, 216), videos_per_call=2)
  c.schedule.update(corr_steps=100, recluster_every=50,
                    seg_learning_rate=1e-4)
  c.total_steps = 200
  c.log_every_steps = 10
  c.checkpoint_every_steps = 50
  # DAVIS-2016 val (data.root), 4 videos resized to 320 x 320.
  c.evals = cd.evals(
      davis=cd.vos_eval(source="davis", videos="4", crop_size=320),
      davis_propagation=cd.vos_eval(source="davis", videos="4",
                                    crop_size=320, predictor="propagation"))
