r"""SFC: fine-grained FC net fused with an image-level semantic net.

Hu et al., ECCV 2022 (Alxead/SFC). Evaluation fuses FC's and a MoCo/BYOL
ResNet's layer3 features at stride 8 (SFC `code/test_vos.py:61-79`):
f = normalise([1.75 * n(f_fc), n(f_sem)]); DAVIS topk 15, radius 15,
temperature 0.1, context 20. Published: 0.7134 J&F on DAVIS-17 val.

The default is the no-download demo: FC trained on the embedded synthetic
videos for a few minutes on 2 CPU cores, then label propagation on held-out
synthetic videos, trained vs random init (FC alone: the demo has no semantic
net). `:fused` turns on the late fusion; each member's `checkpoint` is
'self' (the FC net this run trains), an encoder directory from
`python -m corrjax.convert`, or a training workdir (configs/moco.py,
configs/byol.py).

  python -m corrjax.main --config=configs/sfc.py
  python -m corrjax.main --config=configs/sfc.py:smoke   # seconds; tests
  # The paper: train FC, then evaluate fused with a semantic net:
  python -m corrjax.main --config=configs/sfc.py:paper,fused \
      --config.data.root=/data/ytvos/train_all_frames/JPEGImages \
      --config.evals.davis.root=/data/DAVIS \
      --config.evals.davis.fusion.semantic.checkpoint=/ckpt/moco_v1_r50
  # Released weights only, no training (both converted first):
  python -m corrjax.main --config=configs/sfc.py:paper,fused --mode=eval \
      --config.evals.davis.root=/data/DAVIS --workdir=/tmp/sfc_eval \
      --config.evals.davis.fusion.fc.checkpoint=/ckpt/sfc_fc \
      --config.evals.davis.fusion.semantic.checkpoint=/ckpt/moco_v1_r50

Arguments: smoke, paper (FC's full paper recipe, see configs/fc.py), fused,
davis2016 (FC on DAVIS-2016 train frames, evaluated on its val set),
lambd=<float> (FC's fusion weight, default 1.75).
"""

import ml_collections as mlc

from configs import fc
from corrjax import config_defaults as cd


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, paper=False, fused=False,
                     davis2016=False, lambd=1.75)
  if arg.paper:
    c = fc.get_config("paper,davis2016" if arg.davis2016 else None)
  elif arg.davis2016:
    c = fc.get_config("davis2016")
  else:
    c = fc.get_config("smoke" if arg.smoke else "demo")
  if arg.paper and not arg.davis2016:
    c.evals = cd.evals(davis=cd.vos_eval(source="davis"))
  for bench in c.evals.values():
    if not arg.smoke:
      bench.update(dict(topk=10, radius=12.0, context=20, temperature=0.05))
    if arg.fused:
      bench.update(dict(topk=15, radius=15.0, temperature=0.1))
      bench.fusion = mlc.ConfigDict(dict(
          fc=dict(checkpoint="self", weight=arg.lambd),
          semantic=dict(checkpoint="", weight=1.0)))
  if not arg.fused:
    c.fusion_note = ("Evaluating the FC network alone (no semantic network "
                     "in this run); configs/sfc.py:fused adds one.")
  return c
