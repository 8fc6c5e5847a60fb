"""Stop requests: signals become a flag the training loop checks.

The jitted step donates the state, so an exception raised inside it would
leave nothing to save. SIGINT, SIGTERM and SIGHUP (and a closed output pipe,
reported by `console.Console`) therefore only set `requested`; the loop
finishes the current step, saves, waits for the save and stops.

A second signal interrupts at once (KeyboardInterrupt), except inside a
`critical()` section (a checkpoint save or the wait for one), where it is
deferred to the section's end: a run always ends with a finished checkpoint
or with the previous one intact, never with a half-written one.
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
  """Context manager installing the handlers (main thread only)."""

  def __init__(self):
    self.requested = ""
    self._critical = 0
    self._pending_interrupt = False
    self._previous = {}

  def request(self, reason: str) -> None:
    """Asks the loop to stop (first reason wins)."""
    self.requested = self.requested or reason

  def _handle(self, signum, frame):
    del frame
    again = bool(self.requested)
    self.request(signal.Signals(signum).name)
    if again:
      if self._critical:
        self._pending_interrupt = True
      else:
        raise KeyboardInterrupt(self.requested)

  @contextlib.contextmanager
  def critical(self):
    """A section no signal may interrupt (deferred to its end)."""
    self._critical += 1
    try:
      yield
    finally:
      self._critical -= 1
    if not self._critical and self._pending_interrupt:
      self._pending_interrupt = False
      raise KeyboardInterrupt(self.requested)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
