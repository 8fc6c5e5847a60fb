"""One host of tests/multihost_test.py: the real entry point,
`corrjax.main.main`, with LOCAL_DEVICES fake CPU devices and a check that
this host is fed only its slice (HOST_BATCH examples) of the global batch.

  python tests/multihost_worker.py LOCAL_DEVICES HOST_BATCH \
      --multihost --coordinator_address=127.0.0.1:PORT --num_processes=2 \
      --process_id=I --config=configs/fc.py:smoke --workdir=...
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax


def main(local_devices: int, host_batch: int, argv: list[str]) -> None:
  jax.config.update("jax_num_cpu_devices", local_devices)
  jax.config.update("jax_platforms", "cpu")
  from absl import app
  from corrjax import main as corrjax_main
  from corrjax import sharding
  shard_host_batch = sharding.shard_host_batch

  def checked(batch, batch_sh):
    sizes = {k: v.shape[0] for k, v in batch.items()}
    assert set(sizes.values()) == {host_batch}, sizes
    return shard_host_batch(batch, batch_sh)

  sharding.shard_host_batch = checked
  app.run(corrjax_main.main, argv=["corrjax.main"] + argv,
          flags_parser=corrjax_main.parse_flags)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
