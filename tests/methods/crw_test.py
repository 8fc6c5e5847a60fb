"""CRW method: node encoder, sharded train step, batches, CLI smoke run."""

import functools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax import config_defaults
from corrjax import methods
from corrjax import networks
from corrjax import optim
from corrjax import sharding
from corrjax import train
from corrjax.methods import crw as crw_method
from corrjax.models import crw as crw_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_TRAIN_STEP = crw_method.train_step


def _config(arg="smoke"):
  return config_defaults.load(os.path.join(REPO, f"configs/crw.py:{arg}"))


def test_node_embeddings_shapes_and_unit_norm():
  model = crw_model.CRWNet(width=8, embed_dim=16)
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  out = jax.jit(model.apply)(variables, x)
  chex.assert_shape(out["nodes"], (2, 3, 4, 16))
  chex.assert_shape(out["maps"], (2, 3, 4, 4, 4, 64))  # Stride 8, 8 * 8 ch.
  np.testing.assert_allclose(jnp.linalg.norm(out["nodes"], axis=-1), 1.0,
                             rtol=1e-5)
  # Node (b, t, n) embeds patch (b, t, n) (eval-mode BN: no batch mixing).
  shuffled = jax.jit(model.apply)(variables, x[::-1, :, ::-1])["nodes"]
  np.testing.assert_allclose(shuffled[::-1, :, ::-1], out["nodes"],
                             rtol=1e-4, atol=1e-6)


def test_reference_sizes_and_torch_linear_init():
  # Reference: 64 px patches -> 8x8x512 maps -> Linear(512, 128).
  model = crw_model.CRWNet()
  x = jnp.zeros((1, 2, 49, 64, 64, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(model.apply, variables, x)
  assert out["maps"].shape == (1, 2, 49, 8, 8, 512)
  assert out["nodes"].shape == (1, 2, 49, 128)
  assert list(variables["params"]["selfsim_fc"]) == ["linear0"]
  assert variables["params"]["selfsim_fc"]["linear0"]["kernel"].shape == (
      512, 128)
  # Layer3/4 stride 1 keeps their 1x1 downsample convs (channels change).
  assert "downsample_conv" in variables["params"]["encoder"]["layer4"][
      "block0"]
  head = crw_model.SelfSimHead(0, 128).init(
      jax.random.key(0), jnp.zeros((1, 512)))["params"]["linear0"]
  bound = 1 / np.sqrt(512)  # PyTorch Linear: U(-1/sqrt(fan_in), +).
  for leaf in (head["kernel"], head["bias"]):
    assert 0.9 * bound < np.abs(leaf).max() <= bound


@pytest.mark.parametrize("depth,shapes", [
    (-1, {}),
    (0, {"linear0": (64, 16)}),
    (2, {"linear0": (64, 64), "linear1": (64, 64), "linear2": (64, 16)}),
])
def test_head_depth(depth, shapes):
  head = crw_model.SelfSimHead(depth, 16)
  x = jnp.ones((3, 64))
  variables = head.init(jax.random.key(0), x)
  assert {k: v["kernel"].shape for k, v in
          variables.get("params", {}).items()} == shapes
  assert head.apply(variables, x).shape == (3, 16 if shapes else 64)


def _batches(config, n):
  d = config.data
  grid = (d.crop_size - d.patch_size) // d.patch_stride + 1
  rng = np.random.default_rng(0)
  shape = (d.batch_size, d.clip_len, grid * grid, d.patch_size,
           d.patch_size, 3)
  return [{"patches": rng.integers(0, 256, shape, np.uint8)}
          for _ in range(n)]


def _host(state):
  """A host copy that outlives the donated state (raw key data for rng)."""
  return jax.device_get(state.replace(rng=jax.random.key_data(state.rng)))


def _float64(state):
  """Float64 weights: steps then differ only by float64 rounding."""
  cast = lambda t: jax.tree_util.tree_map(lambda x: x.astype(np.float64), t)
  return state.replace(params=cast(state.params),
                       batch_stats=cast(state.batch_stats))


def _stepper(config, devices):
  """The train step as train.py jits it for a mesh of `devices`.

  Returns:
    (step: host state, host batch -> (host state, metrics), list that
    grows by one per trace).
  """
  traces = []

  def counting_step(*args, **kwargs):
    traces.append(1)
    return _TRAIN_STEP(*args, **kwargs)

  mesh = sharding.make_mesh((-1,), ("data",), devices)
  model = crw_method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  state_sh = jax.tree_util.tree_map(
      lambda a: a.sharding, train.abstract_state(config, mesh, model, tx))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(crw_method, "train_step", counting_step)
    jitted = train.make_train_step(config, mesh, model, tx, schedule,
                                   state_sh)

  def step(host_state, batch):
    state = jax.device_put(
        host_state.replace(rng=jax.random.wrap_key_data(host_state.rng)),
        state_sh)
    state, metrics = jitted(state, sharding.shard_host_batch(
        batch, sharding.batch_sharding(mesh)))
    assert all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in zip(
        jax.tree_util.tree_leaves(state),
        jax.tree_util.tree_leaves(state_sh)))
    return _host(state), jax.device_get(metrics)

  return step, traces


@functools.lru_cache(maxsize=None)
def _runs():
  """2 steps on 1 device; the 4-device step from each 1-device state.

  In float64 (SGD): in float32 the two differ by summation-order noise that
  BatchNorm amplifies on channels nearly constant over the batch (up to
  1e-4 relative in gradients of this random-init net).
  """
  config = _config()
  config.optim.name, config.optim.learning_rate = "sgd", 0.1
  config.optim.momentum = 0.0
  # 4 clips x 4 frames x 3x3 patches of 16 px: float64 convs are slow.
  config.data.update(batch_size=4, crop_size=32, patch_size=16,
                     patch_stride=8)
  batches = _batches(config, 2)
  with jax.enable_x64(True):
    one_step, one_traces = _stepper(config, jax.devices()[:1])
    four_step, four_traces = _stepper(config, jax.devices())
    initial = jax.jit(functools.partial(
        crw_method.init_state, model=crw_method.build_model(config),
        tx=optim.make_optimizer(config.optim, config.total_steps)[0],
        config=config))(jax.random.key(0))
    states, one, four = [_float64(_host(initial))], [], []
    for batch in batches:
      four.append(four_step(states[-1], batch))
      one.append(one_step(states[-1], batch))
      states.append(one[-1][0])
  return dict(config=config, batches=batches, states=states, one=one,
              four=four, one_step=one_step,
              traces=(len(one_traces), len(four_traces)))


@pytest.mark.slow
def test_four_devices_equal_one_device():
  assert jax.device_count() == 4
  runs = _runs()
  for (a, m1), (b, m4) in zip(runs["one"], runs["four"]):
    assert a.params["encoder"]["conv1"]["kernel"].dtype == np.float64
    chex.assert_trees_all_close(
        (a.params, a.batch_stats, a.opt_state, a.step),
        (b.params, b.batch_stats, b.opt_state, b.step), atol=1e-9, rtol=1e-9)
    chex.assert_trees_all_close(m1, m4, atol=1e-9, rtol=1e-9)
  first, last = runs["states"][0], runs["states"][-1]
  assert int(last.step) == 2
  for name in ("encoder", "selfsim_fc"):
    assert not np.allclose(jax.tree_util.tree_leaves(first.params[name])[0],
                           jax.tree_util.tree_leaves(last.params[name])[0])


@pytest.mark.slow
def test_step_traces_once_and_reports_walk_terms():
  runs = _runs()
  assert runs["traces"] == (1, 1)
  metrics = [m for _, m in runs["one"]]
  assert set(metrics[0]) >= {"loss", "xent_r1", "xent_r2", "acc_r1",
                             "acc_r2", "lr", "grad_norm", "param_norm"}
  n = 9  # 3x3 patches of the smoke config.
  for m in metrics:
    assert 0 < m["loss"] < 2 * np.log(n) and m["grad_norm"] > 0
    np.testing.assert_allclose(m["loss"], (m["xent_r1"] + m["xent_r2"]) / 2,
                               rtol=1e-12)
  assert runs["config"].walk.edge_dropout > 0


@pytest.mark.slow
def test_edge_dropout_masks_are_a_function_of_the_step():
  # Same weights and batch as the first step, one step later: other masks.
  # (Equal masks for equal steps: the 1- and 4-device steps agree above.)
  runs = _runs()
  initial, batch = runs["states"][0], runs["batches"][0]
  with jax.enable_x64(True):
    _, metrics = runs["one_step"](initial.replace(step=np.int32(1)), batch)
  assert float(metrics["loss"]) != float(runs["one"][0][1]["loss"])
  assert float(metrics["lr"]) == float(runs["one"][0][1]["lr"])


@pytest.mark.slow
def test_encoder_variables_are_the_propagation_trunk():
  runs = _runs()
  config, trained = runs["config"], runs["states"][-1]
  method = methods.get("crw")
  encoder = method.encoder(config)
  assert encoder.stride == 8
  variables = method.encoder_variables(networks.state_tree(trained))
  assert set(variables["params"]) >= {"conv1", "bn1", "layer3", "layer4"}
  assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 3, 8)
  with jax.enable_x64(True):  # The trained weights are float64 here.
    feats = jax.jit(encoder.apply)(variables, jnp.zeros((1, 32, 32, 3)))
  assert feats.shape == (1, 4, 4, 32)  # layer3 of width 8: 32 channels.
  np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, rtol=1e-5)


def test_make_batches_gives_patch_grids():
  config = _config()
  batches, source = crw_method.make_batches(config, start_step=0)
  batch = next(batches)
  assert batch["patches"].dtype == np.uint8
  assert batch["patches"].shape == (8, 4, 9, 32, 32, 3)
  assert not source.bad_frames


@pytest.mark.parametrize("field,value,message", [
    ("data.clip_len", 2, "at least 3 frames"),
    ("walk.edge_dropout", 1.0, r"must be in \[0, 1\)"),
    ("walk.temperature", 0.0, "must be positive"),
])
def test_bad_config_is_a_clear_error(field, value, message):
  config = _config()
  part, key = field.split(".")
  config[part][key] = value
  model = crw_method.build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  with pytest.raises(ValueError, match=message):
    crw_method.bind_train_step(config, model=model, tx=tx, schedule=schedule)


def test_kinetics_without_eval_root_fails_before_training(tmp_path):
  config = _config("")
  config.data.root = str(tmp_path)
  with pytest.raises(ValueError, match="config.evals.davis.root is empty"):
    crw_method.make_batches(config, start_step=0)
