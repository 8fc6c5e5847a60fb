"""The networks an evaluation scores, resolved from a config: this run's
trained weights, the random initialisation, encoder directories, other
training workdirs and their late fusion.

Nothing here builds a training loop: a checkpoint is restored as a plain
tree (`checkpointing.restore_tree`) and handed to the method's encoder
seam (`method.encoder(config)`, `method.encoder_variables(tree)`, see
methods/__init__.py).
"""

import flax.serialization
import jax
import ml_collections
import optax

from corrjax import checkpointing
from corrjax import methods
from corrjax import pretrained
from corrjax.methods import liir
from corrjax.evals import features
from corrjax.evals import network as network_lib

SELF = "self"  # Fusion member checkpoint meaning "the evaluated network".
# Encoder directories of whole networks (corrjax.convert), by their arch.
ENCODER_ARCHS = {liir.ARCH: liir.encoder_from_variables}


def state_tree(state) -> dict:
  """A TrainState (or an already plain tree) as a nested dict."""
  if isinstance(state, dict):
    return state
  return flax.serialization.to_state_dict(jax.device_get(state))


def of_method(config: ml_collections.ConfigDict, tree: dict, label: str,
              batch_size: int = 8, own_predictor: bool = True
              ) -> network_lib.Network:
  """The network of `config.method` with the weights of a state tree (and
  the method's mask predictor, if it has one and `own_predictor`)."""
  method = methods.get(config.method)
  variables = method.encoder_variables(tree)
  make_predictor = (getattr(method, "mask_predictor", None)
                    if own_predictor else None)
  if make_predictor is None:
    return network_lib.from_encoder(label, method.encoder(config), variables,
                                    batch_size=batch_size)
  return network_lib.from_encoder(
      label, method.encoder(config), variables, batch_size=batch_size,
      predict_masks=make_predictor(config, tree),
      predictor_settings=getattr(method, "predictor_settings",
                                 lambda config: None)(config))


def initial_tree(config: ml_collections.ConfigDict) -> dict:
  """The method's state as initialised by `config.seed`, as a plain tree."""
  method = methods.get(config.method)
  return state_tree(method.init_state(
      jax.random.key(config.seed), model=method.build_model(config),
      tx=optax.identity(), config=config))


def random_init(config: ml_collections.ConfigDict, batch_size: int = 8,
                own_predictor: bool = True) -> network_lib.Network:
  """The method's network as initialised by `config.seed` (no training)."""
  return of_method(config, initial_tree(config), "random_init", batch_size,
                   own_predictor)


def from_path(path: str, label: str, batch_size: int = 8
              ) -> network_lib.Network:
  """An encoder directory (corrjax.convert) or a training workdir."""
  pretrained.check_encoder_path(path)
  if pretrained.is_encoder_dir(path):
    variables, spec = pretrained.load_encoder(path)
    if spec["arch"] in ENCODER_ARCHS:  # Whole networks, not plain trunks.
      encoder = ENCODER_ARCHS[spec["arch"]](variables)
    else:
      encoder = features.trunk_encoder(**spec)
    return network_lib.from_encoder(label, encoder, variables,
                                    batch_size=batch_size)
  config = pretrained.workdir_config(path)
  _, tree = checkpointing.restore_tree(path)
  return of_method(config, tree, label, batch_size)


def check_fusion(bench_name: str, bench) -> None:
  """Fails fast (before any training) on a fusion member that cannot load.

  Raises:
    ValueError: a member without a checkpoint.
    FileNotFoundError: a checkpoint path that is not an encoder directory or
      a training workdir.
  """
  for name, member in (bench.get("fusion") or {}).items():
    if not member.checkpoint:
      raise ValueError(
          f"fusion member {name!r} has no checkpoint: set "
          f"--config.evals.{bench_name}.fusion.{name}.checkpoint=<encoder "
          "dir from corrjax.convert, or a training workdir> (or "
          f"'{SELF}' for the network this run trains).")
    if member.checkpoint != SELF:
      pretrained.check_encoder_path(member.checkpoint)


def needs_own_network(evals) -> bool:
  """False when every benchmark of `evals` ({name: benchmark config}) fuses
  only networks from elsewhere."""
  for bench in evals.values():
    members = bench.get("fusion") or {}
    if not members or any(m.checkpoint == SELF for m in members.values()):
      return True
  return False


def for_benchmark(config: ml_collections.ConfigDict, bench_name: str,
                  tree: dict | None, step: int
                  ) -> list[network_lib.Network]:
  """What `config.evals[bench_name]` scores, first the main network.

  Args:
    config: the run's config.
    bench_name: key in `config.evals`.
    tree: this run's state as a plain tree, or None when there is no
      trained network (fusion of outside networks only).
    step: the state's step (0: the untrained initialisation).
  """
  bench = config.evals[bench_name]
  batch = bench.get("batch_size", 8)
  own = bench.get("predictor", "auto") != "propagation"
  members = bench.get("fusion") or {}
  label = "trained" if step else "random_init"
  if members:
    check_fusion(bench_name, bench)
    parts, weights = [], []
    for name, member in members.items():
      if member.checkpoint == SELF:
        if tree is None:
          raise ValueError(f"fusion member {name!r} is '{SELF}' but there "
                           "is no trained network in this run.")
        parts.append(of_method(config, tree, name, batch, own_predictor=False))
      else:
        parts.append(from_path(member.checkpoint, name, batch))
      weights.append(member.weight)
    nets = [network_lib.fuse("fused", parts, weights)]
  else:
    if tree is None:
      raise ValueError("there is no network to evaluate.")
    nets = [of_method(config, tree, label, batch, own_predictor=own)]
  if bench.get("random_init_baseline") and step:
    nets.append(random_init(config, batch, own))
  return nets
