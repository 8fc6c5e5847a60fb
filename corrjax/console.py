"""Progress output that survives a closed pipe, mirrored into the workdir.

`python -m corrjax.main ... | tee log` and a Ctrl-C kill `tee` too; the
next print then raises BrokenPipeError (Python ignores SIGPIPE), which used
to abort the run in the middle of a checkpoint save. `Console` catches every
output error, points stdout and stderr at /dev/null so that no later write
(ours, absl's, orbax's, the interpreter's at exit) can fail, and reports the
broken pipe once through `on_broken` so that the training loop can stop
cleanly, as it does on SIGINT.

Every line also goes to `<workdir>/corrjax.log` once `attach` names it, so
nothing printed is lost with the terminal.
"""

from collections.abc import Callable
import os
import sys
import tempfile
import time
import traceback


class Console:
  """`console(message)` prints one line; never raises on output errors."""

  def __init__(self, on_broken: Callable[[str], None] | None = None):
    self.on_broken = on_broken
    self.broken = False
    self.log_path: str | None = None

  def attach(self, path: str) -> None:
    """Also appends every line to `path` (created with its folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.log_path = path
    self._append(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} "
                 f"{' '.join(sys.argv)}")

  def __call__(self, message: str) -> None:
    self._append(message)
    if self.broken:
      return
    try:
      print(message, flush=True)
    except (BrokenPipeError, OSError, ValueError):
      self.silence()

  def error(self, message: str) -> None:
    """One line to stderr (and the log file)."""
    self._append(message)
    if self.broken:
      return
    try:
      print(message, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError, ValueError):
      self.silence()

  def write_traceback(self) -> str:
    """Appends the exception being handled to the log file (or a temporary
    file when there is none) and returns that file's path."""
    text = traceback.format_exc()
    if self.log_path:
      self._append(text)
      return self.log_path
    fd, path = tempfile.mkstemp(prefix="corrjax-", suffix=".log")
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return path

  def silence(self) -> None:
    """Sends fds 1 and 2 to /dev/null and reports the broken output once."""
    if self.broken:
      return
    self.broken = True
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
      try:
        os.dup2(devnull, fd)
      except OSError:
        pass
    os.close(devnull)
    if self.on_broken is not None:
      self.on_broken("EPIPE")

  def _append(self, message: str) -> None:
    if not self.log_path:
      return
    try:
      with open(self.log_path, "a") as f:
        f.write(message + "\n")
    except OSError:
      pass  # The log file is a convenience; never fail a run for it.
