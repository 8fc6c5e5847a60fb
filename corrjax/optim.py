"""Optimisers, learning-rate schedules, the EMA momentum and EMA update."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax


def schedule_reads_total_steps(config: ml_collections.ConfigDict) -> bool:
  """Whether `learning_rate_schedule(config, total_steps)` depends on
  `total_steps`: only 'cosine' decays over the run (compiled_steps.py keys
  a compiled step by `total_steps` only where something reads it)."""
  return config.schedule == "cosine"


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           total_steps: int) -> optax.Schedule:
  """`config.schedule` in {'constant', 'cosine', 'multistep'}, with warmup.

  'multistep' is torch's MultiStepLR stepped once per iteration (CRW,
  videowalk `code/train.py:159-161`): the update of step s uses
  lr * gamma ** (number of `config.milestones` <= s). A non-empty
  `config.factors` replaces gamma: the factor of the base lr from each
  milestone on (LIIR's momentum run, `main_dis.py:273-287`: .9, .75, ...).
  """
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1))
  elif config.schedule == "multistep":
    factors = tuple(config.get("factors", ()))
    scales = [config.gamma] * len(config.milestones)
    if factors:
      if len(factors) != len(config.milestones):
        raise ValueError(f"optim.factors has {len(factors)} factors for "
                         f"{len(config.milestones)} milestones.")
      scales = [f / p for f, p in zip(factors, (1.0,) + factors[:-1])]
    main = optax.piecewise_constant_schedule(
        lr, {int(m) - warmup: s for m, s in zip(config.milestones, scales)})
  else:
    raise ValueError(f"Unknown optim.schedule {config.schedule!r}; "
                     "expected 'constant', 'cosine' or 'multistep'.")
  if not warmup:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _decay_mask(params):
  """Weight decay on conv/dense kernels only (not BN scales or biases)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def frozen_labels(patterns):
  """params -> 'frozen' / 'trained' per leaf: frozen when its '/'-joined
  path (e.g. 'encoder/layer1/block0/conv1/kernel') matches a regex."""
  compiled = [re.compile(p) for p in patterns]

  def labels(params):
    def label(path, _):
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      return "frozen" if any(p.search(name) for p in compiled) else "trained"
    return jax.tree_util.tree_map_with_path(label, params)

  return labels


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser of `config` (see `_base_optimizer`), with the parameters
  matching `config.frozen` (regexes over '/'-joined paths) left unchanged:
  their updates are zero and they keep no optimiser state."""
  tx, schedule = _base_optimizer(config, total_steps)
  frozen = tuple(config.get("frozen") or ())
  if frozen:
    tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()},
                               frozen_labels(frozen))
  return tx, schedule


def _base_optimizer(config: ml_collections.ConfigDict, total_steps: int
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """PyTorch-semantics optimisers chosen by `config.name`.

  'adam': torch.optim.Adam (eps 1e-8); 'sgd': torch.optim.SGD with
  `config.momentum` (no dampening); both with coupled L2 weight decay
  (wd * param added to the gradient) on kernels only. 'adamw': decoupled.
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.name in ("adam", "sgd"):
    parts = []
    if config.weight_decay:
      parts.append(optax.masked(optax.add_decayed_weights(config.weight_decay),
                                _decay_mask))
    if config.name == "adam":
      parts.append(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8))
    elif config.get("momentum"):
      parts.append(optax.trace(decay=config.momentum))
    parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts), schedule
  if config.name == "adamw":
    return optax.adamw(schedule, weight_decay=config.weight_decay,
                       mask=_decay_mask), schedule
  raise ValueError(f"Unknown optim.name {config.name!r}; "
                   "expected 'adam', 'sgd' or 'adamw'.")


def ema_momentum(step: jax.Array, total_steps: int,
                 base_momentum: float) -> jax.Array:
  """BYOL's cosine momentum (SFC `code/models/fine_grained.py:68-76`).

  m_k = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2, rising from `base` at
  k = 0 to 1 at k = K. The reference evaluates it with k = the number of
  updates already made, before this step's target forward.
  """
  k = jnp.asarray(step, jnp.float32)
  return 1.0 - (1.0 - base_momentum) * (jnp.cos(jnp.pi * k / total_steps)
                                        + 1.0) / 2.0


def ema_update(target, online, momentum: float | jax.Array):
  """momentum * target + (1 - momentum) * online, leaf by leaf.

  Written out rather than as `optax.incremental_update(online, target,
  1 - momentum)`, which is the same formula but, inside a jitted step, lets
  XLA fuse (and round) it differently: after 20 FC steps every weight
  differed by up to 4e-3 and the demo's J&F moved by 0.004. This form keeps
  FC and MoCo bit-identical to their recorded runs (docs/benchmarks.md).

  Args:
    target: the EMA pytree (e.g. target_params).
    online: a pytree of the same structure (the online weights).
    momentum: scalar m (Python float or float32 [] array).

  Returns:
    the new target, structure and dtypes of `target`.
  """
  return jax.tree_util.tree_map(
      lambda t, o: t * momentum + o * (1.0 - momentum), target, online)
