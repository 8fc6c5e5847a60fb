"""Stand-in modules for a reference checkout's unused imports.

The reference scripts import packages at module level that the code the
benchmarks call never uses (matplotlib, tensorboard, torchvision's data
loaders); where those do not import here, a stub takes their place.
"""

import types


def stub(name: str) -> types.ModuleType:
  """A module whose every public attribute is another stub."""
  mod = types.ModuleType(name)

  def getattr_(attr):
    if attr.startswith("__"):
      raise AttributeError(attr)
    return stub(f"{name}.{attr}")

  mod.__getattr__ = getattr_
  return mod
