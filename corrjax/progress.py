"""Progress lines for long loops: done/total, rate, ETA, a small bar.

Printed as whole lines through the run's `log` (so they survive pipes and
land in the workdir's log file), at most one every `every_seconds` unless a
caller's message must be shown (each `advance` with a message prints).
"""

from collections.abc import Callable
import time


def format_seconds(seconds: float) -> str:
  """1h02m, 3m05s or 12s."""
  seconds = int(max(seconds, 0))
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  if seconds >= 60:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds}s"


class Progress:
  """`advance(n, message)` after each unit of work."""

  def __init__(self, total: int, unit: str, *,
               log: Callable[[str], None] = print, width: int = 20,
               every_seconds: float = 10.0):
    self.total, self.unit, self.log = max(int(total), 1), unit, log
    self.width, self.every = width, every_seconds
    self.done = 0
    self.start = self._last = time.time()

  def line(self, message: str = "") -> str:
    elapsed = time.time() - self.start
    rate = self.done / max(elapsed, 1e-9)
    eta = (self.total - self.done) / max(rate, 1e-9)
    filled = round(self.width * self.done / self.total)
    bar = "#" * filled + "." * (self.width - filled)
    text = (f"  [{bar}] {self.done}/{self.total} {self.unit} | "
            f"{rate:.2f} {self.unit}/s | ETA {format_seconds(eta)}")
    return f"{text} | {message}" if message else text

  def advance(self, n: int = 1, message: str = "") -> None:
    self.done += n
    now = time.time()
    if message or now - self._last >= self.every or self.done >= self.total:
      self._last = now
      self.log(self.line(message))
