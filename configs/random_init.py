r"""Label propagation with a randomly initialised ResNet (no training).

The baseline of the propagation protocol: torchvision's initialisation
(He-normal convs, BN gamma 1; no zero-gamma), layer3 features at stride 8.
CRW reports about 0.325 J&F on DAVIS-17 val for random init.

  # DAVIS-2016 val (20 sequences, 480p):
  python -m corrjax.main --config=configs/random_init.py:davis \
      --config.evals.davis.root=$CORRJAX_DATA/davis2016
  # JHMDB keypoints (PCK):
  python -m corrjax.main --config=configs/random_init.py:jhmdb \
      --config.evals.jhmdb.root=$CORRJAX_DATA/jhmdb_sample

  # VIP human parts (mIoU): --config=configs/random_init.py:vip
  #     --config.evals.vip.root=<VIP_Fine>

Arguments: davis, jhmdb, vip, width=<int> (default 64).
"""

from corrjax import config_defaults as cd


def get_config(arg=None):
  arg = cd.parse_arg(arg, davis=False, jhmdb=False, vip=False, width=64)
  c = cd.base(total_steps=0)
  c.model = cd.fine_grained_model("resnet18", width=arg.width)
  c.model.zero_init_last_bn = False
  c.loss = dict(radius=0.5)
  c.ema = dict(base_momentum=0.99)
  c.optim = dict(frozen=(),  # Regexes of parameter paths kept fixed.
                 name="adam", learning_rate=1e-3, weight_decay=0.0,
                 momentum=0.9, schedule="constant", warmup_steps=0)
  c.data = cd.two_view_data(source="synthetic")  # Unused: no training.
  c.features = cd.trunk_features()
  if arg.jhmdb:
    c.evals = cd.evals(jhmdb=cd.pose_eval())
  elif arg.vip:
    c.evals = cd.evals(vip=cd.parsing_eval())
  elif arg.davis:
    c.evals = cd.evals(davis=cd.vos_eval(source="davis"))
  else:
    c.evals = cd.evals(synthetic=cd.vos_eval(source="synthetic"))
  return c
