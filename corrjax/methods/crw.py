"""CRW training: a contrastive random walk on a space-time graph of patches.

Jabri et al., "Space-Time Correspondence as a Contrastive Random Walk",
NeurIPS 2020. Reference: ajabri/videowalk@047f3f4 `code/model.py` (model,
walk and loss), `code/train.py` (optimiser, loop), `code/utils/augs.py`
(patches, CIFAR normalisation). One step, as `CRW.forward` and
`train_one_epoch` (`train.py:31-53`): all B * T * N patches through the
encoder in one train-mode call, node embeddings, affinities between
consecutive frames, edge dropout, palindrome walks, loss, Adam step.

Edge dropout draws its masks from `fold_in(state.rng, state.step)`, so the
step is a pure function of (state, batch) and independent of the sharding.

Not implemented, all off in the reference command: `--featdrop` (dropout
on feature maps, `model.py:98-99`), `--sk-targets` (experimental; its branch
reads an undefined `A`, `model.py:160`, so it cannot run), `--zero-diagonal`
(parsed but unused by `forward`).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from corrjax import train_state as train_state_lib
from corrjax.data import clips
from corrjax.data import normalization
from corrjax.losses import walk
from corrjax.models import crw
from corrjax.models import precision
from corrjax.methods import step_tail
from corrjax.methods import trunk

# The step does not depend on config.total_steps (no EMA or schedule over
# the run's length): runs that differ only there share one compiled step
# (corrjax/compiled_steps.py).
STEP_READS_TOTAL_STEPS = False


def build_model(config: ml_collections.ConfigDict) -> crw.CRWNet:
  m = config.model
  return crw.CRWNet(arch=m.arch, width=m.width, strides=tuple(m.strides),
                    padding_mode=m.padding_mode, head_depth=m.head_depth,
                    embed_dim=m.embed_dim, dtype=precision.compute_dtype(m))


def init_state(rng: jax.Array, *, model: crw.CRWNet,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict
               ) -> train_state_lib.TrainState:
  """Weights from `rng` (torchvision and PyTorch Linear init)."""
  init_rng, state_rng = jax.random.split(rng)
  p = config.data.patch_size
  variables = model.init(init_rng, jnp.zeros((1, 1, 1, p, p, 3)),
                         train=False)
  params = variables["params"]
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables["batch_stats"], opt_state=tx.init(params),
      rng=state_rng)


def train_step(state: train_state_lib.TrainState, batch: dict[str, jax.Array],
               *, model: crw.CRWNet, tx: optax.GradientTransformation,
               schedule: optax.Schedule, temperature: float,
               edge_dropout: float, flip: bool, normalization_name: str):
  """One CRW update. Pure; jit it with shardings (see train.py).

  Args:
    state: the train state.
    batch: {"patches": uint8 [B, T, N, P, P, 3]}: T frames per clip, N
      patches per frame in row-major grid order (y outer, x inner).
    model: the node encoder.
    tx: optimiser.
    schedule: learning-rate schedule, for logging.
    temperature: walk softmax temperature.
    edge_dropout: probability of dropping each transition edge.
    flip: left-multiplied walks (`--flip`).
    normalization_name: input normalisation ('cifar' as the reference).

  Returns:
    (new state, metrics dict of scalars).
  """
  x = normalization.normalize(batch["patches"], name=normalization_name)
  b, t, n = x.shape[:3]
  drops = {}
  if edge_dropout > 0:
    drops = dict(zip(("forward_drop", "backward_drop"), walk.draw_edge_drops(
        jax.random.fold_in(state.rng, state.step), (b, t - 1, n, n),
        edge_dropout)))

  def loss_fn(params):
    out, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True,
        mutable=["batch_stats"])
    loss, terms = walk.walk_loss(walk.affinities(out["nodes"]),
                                 temperature=temperature, flip=flip, **drops)
    return loss, (terms, updates["batch_stats"])

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state, update_metrics = step_tail.apply_gradients(
      state, grads, tx=tx, schedule=schedule)
  new_state = new_state.replace(batch_stats=batch_stats)
  return new_state, {"loss": loss, **terms, **update_metrics}


def bind_train_step(config: ml_collections.ConfigDict, *,
                    model: crw.CRWNet, tx: optax.GradientTransformation,
                    schedule: optax.Schedule):
  """`train_step` with everything but (state, batch) bound from `config`."""
  w = config.walk
  if config.data.clip_len < 3:
    raise ValueError(
        f"config.data.clip_len={config.data.clip_len}: CRW needs clips of at "
        "least 3 frames (its shortest walk is 0 -> 2 -> 0).")
  if not 0 <= w.edge_dropout < 1:
    raise ValueError(
        f"config.walk.edge_dropout={w.edge_dropout} must be in [0, 1).")
  if w.temperature <= 0:
    raise ValueError(
        f"config.walk.temperature={w.temperature} must be positive.")
  return functools.partial(
      train_step, model=model, tx=tx, schedule=schedule,
      temperature=w.temperature, edge_dropout=w.edge_dropout, flip=w.flip,
      normalization_name=config.data.normalization)


def make_batches(config: ml_collections.ConfigDict, *, start_step: int):
  """This host's clip batches from `start_step` on, and the clip source.

  Returns:
    (iterator of {"patches": uint8 [B_host, T, N, P, P, 3]}, source whose
    `bad_frames` counts the unreadable frames skipped).
  """
  for name, bench in (config.get("evals") or {}).items():
    if (bench.source == "davis" and not bench.root and
        config.data.source == "video" and config.data.root):
      # Checked before training, not after it: the evaluator's fallback to
      # config.data.root cannot be a DAVIS root when that holds videos.
      raise ValueError(
          f"config.evals.{name}.root is empty: pass the DAVIS root with "
          f"--config.evals.{name}.root=... (or --config.evals.{name}."
          "source=none).")
  return clips.crw_batches(
      config.data, global_batch_size=config.data.batch_size,
      start_step=start_step, total_steps=config.total_steps,
      seed=config.seed)


encoder = trunk.encoder
encoder_variables = trunk.encoder_variables
