"""Dense projection heads (1x1 convs on NHWC maps)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from corrjax.models import resnet


def torch_conv_bias_init(fan_in: int):
  """PyTorch's default Conv/Linear bias init: U(-1/sqrt(fan_in), +)."""
  bound = 1.0 / fan_in**0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# PyTorch's default kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), +).
torch_kernel_init = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform")


class ProjectionHead(nn.Module):
  """SFC's `MLP2d` (`code/models/fine_grained.py:7-21`).

  1x1 conv(C -> hidden, bias) -> BN -> ReLU -> 1x1 conv(hidden -> out, bias),
  applied per cell. Names follow the reference (linear1, bn1, linear2).

  Call: `x` float [B, H, W, C], `train` bool. Returns [B, H, W, out] in
  `dtype` (the compute dtype; parameters and BN statistics are float32).
  """
  hidden_dim: int = 2048
  out_dim: int = 256
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_dim = x.shape[-1]
    x = nn.Dense(self.hidden_dim, kernel_init=torch_kernel_init,
                 bias_init=torch_conv_bias_init(in_dim), dtype=self.dtype,
                 name="linear1")(x)
    x = nn.BatchNorm(use_running_average=not train,
                     momentum=resnet.BN_MOMENTUM, epsilon=resnet.BN_EPSILON,
                     dtype=self.dtype, name="bn1")(x)
    x = nn.relu(x)
    return nn.Dense(self.out_dim, kernel_init=torch_kernel_init,
                    bias_init=torch_conv_bias_init(self.hidden_dim),
                    dtype=self.dtype, name="linear2")(x)
