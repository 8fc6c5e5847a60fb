r"""corrjax entry point: train then evaluate, or evaluate a checkpoint.

  python -m corrjax.main --config=configs/sfc.py
  python -m corrjax.main --config=configs/fc.py:davis2016 \
      --config.data.root=$CORRJAX_DATA/davis2016 --workdir=/tmp/fc
  python -m corrjax.main --config=configs/sfc.py --mode=eval
  # Multi-host: the same command on every host (TPU pods autodetect the
  # rest; elsewhere name the coordinator, the process count and this id):
  python -m corrjax.main --config=configs/fc.py --multihost \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

Config overrides are locked: a misspelled `--config.x.y` is an error.
Set CORRJAX_TRACEBACK=1 to see full tracebacks of input errors.
"""

import os
import re
import sys

# Before anything imports TensorFlow (a tfds reader): silence its banners.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF computes nothing.

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from corrjax import cli_flags  # pylint: disable=g-import-not-at-top
from corrjax import console  # pylint: disable=g-import-not-at-top
from corrjax import input_checks  # pylint: disable=g-import-not-at-top
from corrjax import interrupts  # pylint: disable=g-import-not-at-top


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None

_CONFIG = cli_flags.config_file_flag()
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (default: ./workdir/<config name>).")
_MODE = flags.DEFINE_string(
    "mode", "train", "train (resumes, then evaluates), eval (the latest "
    "checkpoint in --workdir) or a job of the config's method (e.g. "
    "mask_vos's pseudo-labelling).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", bool(os.environ.get("CORRJAX_MULTIHOST")),
    "Call jax.distributed.initialize() (TPU pods, multi-node GPU, CPU "
    "hosts); env CORRJAX_MULTIHOST=1.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("CORRJAX_COORDINATOR_ADDRESS"),
    "--multihost: host:port of process 0 (env CORRJAX_COORDINATOR_ADDRESS); "
    "unset on TPU pods and SLURM, where JAX finds it.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", _env_int("CORRJAX_NUM_PROCESSES"),
    "--multihost: number of processes (env CORRJAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", _env_int("CORRJAX_PROCESS_ID"),
    "--multihost: this process's id in [0, num_processes) (env "
    "CORRJAX_PROCESS_ID).")

# Errors caused by the user's input: printed as one line.
INPUT_ERRORS = (ValueError, FileNotFoundError, FloatingPointError,
                NotADirectoryError, MemoryError)
LOG_NAME = "corrjax.log"  # In the workdir: every line printed, tracebacks.


def default_workdir(config_arg: str) -> str:
  """./workdir/<file stem>[_<arg>] for --config=path/<stem>.py[:arg]."""
  path, _, arg = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += "_" + arg.replace(",", "_").replace("=", "-")
  return os.path.join("workdir", name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/sfc.py")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every write at INFO.
    logging.set_verbosity(logging.WARNING)
    # and warns about read-only folders on every restore: noise to users.
    logging.get_absl_handler().addFilter(_quiet_orbax)
  stop = interrupts.StopRequest()
  log = console.Console(on_broken=stop.request)
  try:  # parse_flags made `configs` importable and loaded the file.
    config = _CONFIG.value
    config.keys()  # Raises here if the file failed to load.
    input_checks.check_paths(config, train=_MODE.value == "train")
  except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
    if os.environ.get("CORRJAX_TRACEBACK"):
      raise
    sys.exit(f"corrjax: error: {_last_line(e)}")
  workdir = _WORKDIR.value or default_workdir(_config_flag_value())
  if _MULTIHOST.value and not _initialize_distributed(
      _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value):
    # Process 0 prints, writes the log file, TensorBoard and evaluates.
    log = _SecondaryConsole(on_broken=stop.request)
  elif _MODE.value == "train" or os.path.isdir(workdir):
    log.attach(os.path.join(workdir, LOG_NAME))
  log(f"corrjax {_MODE.value}: workdir {workdir}")
  try:
    _run(config, workdir, log, stop)
  except INPUT_ERRORS as e:
    if os.environ.get("CORRJAX_TRACEBACK"):
      raise
    log.error(f"corrjax: error: {e}")
    sys.exit(1)
  except KeyboardInterrupt:
    log.error("corrjax: interrupted; the latest checkpoint is complete, run "
              "the same command to resume.")
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get("CORRJAX_TRACEBACK"):
      raise
    path = log.write_traceback()
    log.error(f"corrjax: error: {type(e).__name__}: {_last_line(e)} "
              f"(traceback in {path})")
    sys.exit(1)


class _SecondaryConsole(console.Console):
  """The console of a process other than 0: its info lines are process 0's
  (dropped); its errors still print to stderr."""

  def __call__(self, message: str) -> None:
    del message


def _initialize_distributed(coordinator_address: str | None,
                            num_processes: int | None,
                            process_id: int | None) -> bool:
  """jax.distributed.initialize with the flags' values; True on process 0.

  On CPU hosts the cross-process collectives are gloo's (the CPU backend
  has none by default); the setting does nothing on TPU or GPU.
  """
  import jax  # pylint: disable=g-import-not-at-top
  given = {"coordinator_address": coordinator_address,
           "num_processes": num_processes, "process_id": process_id}
  kwargs = {k: v for k, v in given.items() if v is not None}
  if kwargs and len(kwargs) != 3:
    raise app.UsageError(
        "--multihost outside a TPU pod or SLURM needs all of "
        "--coordinator_address, --num_processes and --process_id; got "
        + ", ".join(f"--{k}" for k in kwargs) + ".")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  return jax.process_index() == 0


def _quiet_orbax(record) -> bool:
  return record.levelno >= 40 or "/orbax/" not in record.pathname


def _run(config, workdir: str, log, stop) -> None:
  """Imports JAX (late: --help and config errors stay fast) and runs."""
  import jax  # pylint: disable=g-import-not-at-top
  from corrjax import run  # pylint: disable=g-import-not-at-top
  from corrjax import train  # pylint: disable=g-import-not-at-top

  if _MODE.value == "train" and jax.process_index() > 0:
    train.train(config, workdir, log=log, stop=stop)  # Process 0 evaluates.
  elif _MODE.value == "train":
    run.train_and_evaluate(config, workdir, log=log, stop=stop)
  elif _MODE.value == "eval":
    run.evaluate_workdir(config, workdir, log=log)
  else:
    run.run_job(config, workdir, _MODE.value, log=log)


def _config_flag_value() -> str:
  """The raw value of --config (path[:arg]) from the command line."""
  argv = sys.argv[1:]
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a[len("--config="):]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return ""


def _last_line(error: Exception) -> str:
  """config_flags embeds tracebacks in its messages: keep the last line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else repr(error)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors for bad configs and overrides.

  config_flags raises AttributeError/KeyError for an unknown key in a locked
  config (with a 'Did you mean' hint) and ValueError/TypeError for bad
  values, as tracebacks; they are user errors, so print one line.
  """
  cli_flags.make_config_importable(argv)  # Parsing loads the file.
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"corrjax: error: {_last_line(e)}")
  except (AttributeError, KeyError, ValueError, TypeError) as e:
    if os.environ.get("CORRJAX_TRACEBACK"):
      raise
    message = str(e.args[0] if e.args else e)
    hint = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', message)
    if hint:
      message = (f"unknown key {hint.group(2)!r}; did you mean "
                 f"{hint.group(1)!r}?")
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    sys.exit(f"corrjax: error: bad --config ({' '.join(overrides) or 'file'}"
             f"): {message}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
