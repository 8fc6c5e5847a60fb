"""absl flag parsing for corrjax's small command lines: a bad flag is one
line `corrjax: error: ...` and exit status 1, never a usage dump."""

import sys

from absl import flags
from ml_collections import config_flags

from corrjax import config_defaults


def config_file_flag() -> flags.FlagHolder:
  """`--config=<file>[:arg]` (a locked ConfigDict), defined once per process:
  `corrjax.main` and `corrjax.aot` share it when both are imported (as in
  one test process) instead of failing with absl's DuplicateFlagError."""
  if "config" in flags.FLAGS:
    return flags.FlagHolder(flags.FLAGS, flags.FLAGS["config"])
  return config_flags.DEFINE_config_file(
      "config", None, "Path to a config file, optionally with ':arg'.",
      lock_config=True)


def make_config_importable(argv: list[str]) -> None:
  """Puts the folder above the `configs/` of argv's `--config` file on
  sys.path. Call before the flags parse argv: parsing loads the file, and
  config files import each other (`from configs import fc`), which fails
  from another working directory with only the package installed."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--config="):
      path = arg[len("--config="):]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    else:
      continue
    config_defaults.make_configs_importable(path.partition(":")[0])


def parse_or_exit(argv: list[str]) -> list[str]:
  """`flags_parser` for absl's `app.run`."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"corrjax: error: {e}")
