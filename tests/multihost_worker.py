"""One host of a localhost multi-host run (tests/multihost_test.py).

  python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR \
      LOCAL_DEVICES OUT_NPZ

NUM_PROCESSES > 1 joins jax.distributed on 127.0.0.1:PORT (gloo CPU
collectives), as `corrjax.main --multihost` would; then corrjax.train.train
on FC `:smoke` with SGD (4 steps, checkpoints every 2), checking that this host is
fed only its slice of the global batch, and writes the final parameters.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax


def main(process_id, num_processes, port, workdir, local_devices, out):
  jax.config.update("jax_num_cpu_devices", local_devices)
  jax.config.update("jax_platforms", "cpu")
  if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}",
                               num_processes=num_processes,
                               process_id=process_id)
  import numpy as np
  from corrjax import config_defaults
  from corrjax import sharding
  from corrjax import train

  config = config_defaults.load(os.path.join(REPO, "configs/fc.py:smoke"))
  config.evals = config_defaults.evals()
  config.log_every_steps = 1
  # SGD, not FC's Adam: Adam scales the float noise of the near-zero
  # gradients (zero-initialised last BN of each block) up to whole steps,
  # so reduction order alone would move weights by ~lr.
  config.optim.update(name="sgd", learning_rate=0.1, momentum=0.9)
  host_batch = config.data.batch_size // jax.process_count()
  shard_host_batch = sharding.shard_host_batch

  def checked(batch, batch_sh):
    sizes = {k: v.shape[0] for k, v in batch.items()}
    assert set(sizes.values()) == {host_batch}, sizes
    return shard_host_batch(batch, batch_sh)

  sharding.shard_host_batch = checked
  log = print if jax.process_index() == 0 else (lambda msg: None)
  state = train.train(config, workdir, log=log)
  params = jax.device_get(state.params)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  if jax.process_index() == 0:
    np.savez(out, step=int(jax.device_get(state.step)), **flat)
  print(f"process {jax.process_index()} done", flush=True)


if __name__ == "__main__":
  a = sys.argv[1:]
  main(int(a[0]), int(a[1]), int(a[2]), a[3], int(a[4]), a[5])
