r"""Mask-VOS (DRAFT): unified mask embedding and correspondence learning.

Li et al., CVPR 2023 (§3.3): ResNet-18 E (output stride 8, D = 128 keys),
V (D' = 512), decoder D; 256 x 256 crops, 3 frames per video for L_seg
(N = 2 references), batch 16, Adam lr 1e-4 halved every 100 epochs for 300
epochs of L_corr = 0.1 L_short + 0.5 L_long, then 100 epochs of the full
loss (Eq. 16) at 1e-5 with pseudo masks re-clustered every 10 epochs
(k-means M = 5, 100 EM steps, 3D PE, >40% clusters dropped). Published:
74.5 J&F on DAVIS-17 val (ResNet-18, Table 4a).

Draft: the method trains on synthetic videos only until the pseudo-label
job lands (see methods/mask_vos.py); evaluation runs the decoder with
refinement (`evals.davis`) and E alone by label propagation
(`evals.davis_propagation`).

  python -m corrjax.main --config=configs/mask_vos.py:smoke

Arguments (comma-separated): smoke, arch=resnet18|resnet50.
"""

import ml_collections as mlc

from corrjax import config_defaults as cd


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, arch="resnet18")
  c = cd.base(method="mask_vos", total_steps=100_000, log_every_steps=100,
              checkpoint_every_steps=5_000)
  c.model = mlc.ConfigDict(dict(arch=arg.arch, width=64, key_dim=128,
                                value_dim=512,
                                decoder_widths=(512, 256, 128),
                                dtype="float32"))  # Or 'bfloat16'.
  c.loss = mlc.ConfigDict(dict(temperature=1.0, seg_weight=1.0,
                               short_weight=0.1, long_weight=0.5))
  c.clustering = mlc.ConfigDict(dict(num_clusters=5, num_steps=100,
                                     pe_dim=48, pe_scale=1.0,
                                     max_fraction=0.4, every_epochs=10))
  c.inference = mlc.ConfigDict(dict(context=20, rounds=2))
  c.optim = mlc.ConfigDict(dict(frozen=(), name="adam", learning_rate=1e-4,
                                weight_decay=0.0, momentum=0.9,
                                schedule="constant", warmup_steps=0))
  c.data = mlc.ConfigDict(dict(source="synthetic", batch_size=16,
                               crop_size=256, num_frames=12, num_objects=2,
                               long_gap=5, normalization="imagenet"))
  # The decoder with R refinement rounds; E alone by label propagation.
  c.evals = cd.evals(
      davis=cd.vos_eval(source="davis"),
      davis_propagation=cd.vos_eval(source="davis", predictor="propagation"))
  if arg.smoke:
    c.model.update(width=4, key_dim=8, value_dim=16,
                   decoder_widths=(16, 8, 8))
    c.data.update(batch_size=4, crop_size=32, num_frames=8)
    c.evals = cd.smoke_evals(size=32)
    c.total_steps = 2
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
  return c
