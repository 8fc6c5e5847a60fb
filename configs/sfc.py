r"""SFC: fine-grained FC net fused with an image-level semantic net.

Hu et al., ECCV 2022 (Alxead/SFC). Evaluation fuses FC's and a MoCo/BYOL
ResNet's layer3 features: f = normalise([1.75 * n(f_fc), n(f_sem)]), DAVIS
topk 15, radius 15, temperature 0.1. Published: 0.7134 J&F on DAVIS-17 val.

The semantic net is not implemented yet: this config trains and evaluates FC
alone (and says so when it runs). The default is the no-download demo: FC on
the embedded synthetic videos for a few minutes on 2 CPU cores, then label
propagation on held-out synthetic videos, trained vs random init.

  python -m corrjax.main --config=configs/sfc.py
  python -m corrjax.main --config=configs/sfc.py:smoke   # seconds; tests

Arguments: smoke, paper (FC's full paper recipe, see configs/fc.py).
"""

import os

from corrjax import config_defaults as cd


def _fc_config(arg):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fc.py")
  return cd.load(f"{path}:{arg}")


def get_config(arg=None):
  arg = cd.parse_arg(arg, smoke=False, paper=False)
  if arg.paper:
    c = _fc_config("")
  else:
    c = _fc_config("smoke" if arg.smoke else "demo")
  c.fusion_note = ("SFC's semantic network is not implemented yet: "
                   "evaluating the fine-grained (FC) network alone.")
  if not arg.smoke and not arg.paper:
    c.eval.update(dict(topk=10, radius=12.0, context=20, temperature=0.05))
  return c
