"""Tests for corrjax.optim: Adam vs torch.optim.Adam, schedules, EMA."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from corrjax import optim


def _optim_config(**kw):
  c = dict(name="adam", learning_rate=1e-3, weight_decay=0.0,
           schedule="constant", warmup_steps=0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


@pytest.mark.parametrize("name,weight_decay", [("adam", 0.0), ("adam", 0.01),
                                               ("sgd", 0.0), ("sgd", 0.01)])
def test_optimizers_match_torch(name, weight_decay):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(3, 4)).astype(np.float32)
  grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(5)]
  tx, _ = optim.make_optimizer(
      _optim_config(name=name, weight_decay=weight_decay, momentum=0.9), 5)
  params = {"kernel": jnp.asarray(w0)}
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update({"kernel": jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
  w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
  if name == "adam":
    opt = torch.optim.Adam([w], lr=1e-3, weight_decay=weight_decay)
  else:
    opt = torch.optim.SGD([w], lr=1e-3, momentum=0.9,
                          weight_decay=weight_decay)
  for g in grads:
    w.grad = torch.from_numpy(g)
    opt.step()
  np.testing.assert_allclose(params["kernel"], w.detach().numpy(), atol=1e-6)


def test_weight_decay_skips_bn_and_bias():
  tx, _ = optim.make_optimizer(_optim_config(weight_decay=0.5), 1)
  params = {"conv": {"kernel": jnp.ones(2)}, "bn": {"scale": jnp.ones(2),
                                                     "bias": jnp.ones(2)}}
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(jnp.abs(updates["conv"]["kernel"]).sum()) > 0
  assert float(jnp.abs(updates["bn"]["scale"]).sum()) == 0
  assert float(jnp.abs(updates["bn"]["bias"]).sum()) == 0


def test_schedules():
  _, constant = optim.make_optimizer(_optim_config(), 100)
  assert float(constant(0)) == float(constant(99)) == pytest.approx(1e-3)
  _, cosine = optim.make_optimizer(
      _optim_config(schedule="cosine", warmup_steps=10), 110)
  assert float(cosine(0)) == 0.0
  assert float(cosine(10)) == pytest.approx(1e-3)
  assert float(cosine(110)) == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match="schedule"):
    optim.make_optimizer(_optim_config(schedule="steps"), 10)
  with pytest.raises(ValueError, match="optim.name"):
    optim.make_optimizer(_optim_config(name="lamb"), 10)


def test_ema_momentum_is_the_reference_cosine():
  total, base = 1000, 0.99
  for k in (0, 1, 250, 500, 999, 1000):
    expected = 1 - (1 - base) * (np.cos(np.pi * k / total) + 1) / 2
    np.testing.assert_allclose(optim.ema_momentum(k, total, base), expected,
                               rtol=1e-6)
  assert float(optim.ema_momentum(0, total, base)) == pytest.approx(0.99)
  assert float(optim.ema_momentum(total, total, base)) == pytest.approx(1.0)


def test_ema_update_is_bitwise_the_hand_written_ema():
  rng = np.random.default_rng(0)
  target = {"w": jnp.asarray(rng.normal(size=(64,)), jnp.float32)}
  online = {"w": jnp.asarray(rng.normal(size=(64,)), jnp.float32)}
  for m in (0.5, 0.99, 0.999, optim.ema_momentum(3, 10, 0.99),
            jnp.float32(0.9960001)):
    expected = target["w"] * m + online["w"] * (1.0 - m)
    got = optim.ema_update(target, online, m)["w"]
    np.testing.assert_array_equal(got, expected)


def test_multistep_matches_torch_multisteplr():
  torch = pytest.importorskip("torch")
  config = _optim_config(schedule="multistep")
  config.milestones, config.gamma = (3, 7), 0.3
  schedule = optim.learning_rate_schedule(config, 10)
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.Adam([param], lr=config.learning_rate)
  sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3, 7], gamma=0.3)
  for step in range(10):  # The lr the update of `step` uses.
    np.testing.assert_allclose(float(schedule(step)),
                               opt.param_groups[0]["lr"], rtol=1e-6)
    opt.step()
    sched.step()


@pytest.mark.parametrize("schedule,extra", [
    ("constant", {}), ("cosine", {}),
    ("multistep", dict(gamma=0.3, milestones=(3, 6))),
    ("cosine", dict(warmup_steps=2)),
    ("multistep", dict(gamma=0.3, milestones=(3, 6), warmup_steps=2))])
def test_schedule_reads_total_steps_says_what_the_schedule_does(schedule,
                                                                extra):
  """The learning rates of a 10-step and a 20-step run differ exactly when
  `schedule_reads_total_steps` says so (corrjax/compiled_steps.py shares a
  compiled step between the two otherwise)."""
  config = _optim_config(schedule=schedule, **extra)
  rates = [np.array([float(optim.learning_rate_schedule(config, n)(s))
                     for s in range(10)]) for n in (10, 20)]
  assert optim.schedule_reads_total_steps(config) == (
      not np.array_equal(*rates))
