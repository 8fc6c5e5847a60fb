"""corrjax: self-supervised visual correspondence learning in JAX/Flax."""
