"""absl flag parsing for corrjax's small command lines: a bad flag is one
line `corrjax: error: ...` and exit status 1, never a usage dump."""

import sys

from absl import flags


def parse_or_exit(argv: list[str]) -> list[str]:
  """`flags_parser` for absl's `app.run`."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"corrjax: error: {e}")
