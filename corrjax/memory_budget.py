"""Does the compiled train step fit the device? Checked before step 1.

XLA reports, for a compiled program, the bytes of its arguments, outputs
and temporaries (`Compiled.memory_analysis()`). Their sum, less what the
donated state aliases, is what one device needs at the step's peak. It is
compared with the device's memory: `bytes_limit` from `memory_stats()` on
GPUs and TPUs, the machine's (or cgroup's) memory on CPU, or the
`CORRJAX_MEMORY_LIMIT` environment variable (bytes, or with a K/M/G/T
suffix), which overrides both (tests use it to simulate a small device).
"""

import os

import jax

ENV = "CORRJAX_MEMORY_LIMIT"
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
  """'512M' -> 536870912; plain integers are bytes."""
  text = text.strip().upper().removesuffix("B").removesuffix("I")
  if text and text[-1] in _UNITS:
    return int(float(text[:-1]) * _UNITS[text[-1]])
  return int(float(text))


def _cgroup_limit() -> int | None:
  for path in ("/sys/fs/cgroup/memory.max",
               "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path) as f:
        value = f.read().strip()
    except OSError:
      continue
    if value.isdigit() and int(value) < 2**60:
      return int(value)
  return None


def device_memory_bytes(device: jax.Device | None = None) -> int | None:
  """Memory one device may use, or None when unknown."""
  if os.environ.get(ENV):
    return parse_bytes(os.environ[ENV])
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  if device.platform != "cpu":
    return None
  try:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (OSError, ValueError):
    return None
  limit = _cgroup_limit()
  total = min(total, limit) if limit else total
  # All CPU "devices" share the host's memory.
  return total // max(1, len(jax.local_devices()))


def step_bytes(compiled) -> int | None:
  """Peak bytes of one device for a compiled program, or None if unknown."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes +
             m.temp_size_in_bytes - m.alias_size_in_bytes)


def gib(n: int) -> str:
  """Bytes as GiB (or MiB below 1 GiB)."""
  if n < 2**30:
    return f"{n / 2**20:.0f} MiB"
  return f"{n / 2**30:.1f} GiB"


def check_fits(compiled, *, knobs: str, what: str = "the train step"
               ) -> str | None:
  """Raises MemoryError (one line) when `compiled` cannot fit the device.

  Args:
    compiled: a `jax.stages.Compiled`.
    knobs: the config entries that shrink the program, for the message.
    what: names the program in the message.

  Returns:
    A one-line summary ("needs X of Y") or None when unknown.
  """
  needed = step_bytes(compiled)
  available = device_memory_bytes()
  if needed is None or available is None:
    return None
  if needed > available:
    raise MemoryError(
        f"{what} needs {gib(needed)} per device but the device has "
        f"{gib(available)}; lower {knobs} (or set {ENV} if the limit is "
        "wrong).")
  return f"{what} needs {gib(needed)} of {gib(available)} per device"
