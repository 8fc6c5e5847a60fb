r"""LIIR's propagation protocol on fixed features, at several feature scales.

Why does LIIR's protocol (evals/window_propagation.py: one softmax of raw
dot products over 5 references x a 29 x 29 window) lose the masks of a
CPU-trained LIIR network (docs/benchmarks.md, LIIR section)? This scores
the *random-init* FC ResNet-18 (configs/random_init.py, layer3, stride 8)
whose L2-normalised features are multiplied by each `--scales` value s, so
the dot products are cos / T with T = 1 / s^2; `--kind=crw` scores the
same features under CRW's protocol instead (top-10, radius 12, context 20,
T 0.05; the scale does not matter there).

  python benchmarks/window_protocol_scale.py --scales=1,4.47,10,30,100
  python benchmarks/window_protocol_scale.py --kind=crw --scales=1
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from corrjax import config_defaults  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.evals import davis_data  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.evals import network as network_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.evals import protocol as protocol_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from corrjax.evals import vos  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--davis_root", default=os.path.join(
      os.environ.get("CORRJAX_DATA", ""), "davis2016"))
  p.add_argument("--videos", default="car-shadow,motocross-jump,scooter-black")
  p.add_argument("--crop_size", type=int, default=256)
  p.add_argument("--kind", default="liir", choices=("liir", "crw"))
  p.add_argument("--scales", default="1,4.47,10,30,100")
  args = p.parse_args()
  config = config_defaults.load(os.path.join(REPO,
                                             "configs/random_init.py:davis"))
  net = networks.random_init(config)
  videos = [davis_data.read_video(args.davis_root, v)
            for v in args.videos.split(",")]
  if args.kind == "liir":
    proto = protocol_lib.Propagation(kind="liir", window=14,
                                     crop_size=args.crop_size)
  else:
    proto = protocol_lib.Propagation(crop_size=args.crop_size)
  for scale in (float(s) for s in args.scales.split(",")):
    features = lambda frames, s=scale: net.features(frames) * s  # pylint: disable=g-long-lambda
    scaled = network_lib.Network(label=f"x{scale:g}", features=features,
                                 stride=net.stride, raw_features=features)
    start = time.time()
    g = vos.evaluate(videos, scaled, proto, log=lambda m: None)["global"]
    print(f"{args.kind} scale {scale:g}: J&F {g['J&F-Mean']:.3f} "
          f"J {g['J-Mean']:.3f} F {g['F-Mean']:.3f} "
          f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
