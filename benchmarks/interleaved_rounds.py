"""Side-by-side timing in interleaved rounds (A B A B ...) on a shared machine.

Each `run` is a zero-argument function doing one step (ours, a reference,
...). After `warmup` untimed calls of each, `rounds` rounds run every
function in turn; a round's time is the median of `steps` calls, and the
1-minute load average is read before each. Ratios are taken per round
(both sides ran under about the same load), then summarised by their median
and range, as docs/benchmarks.md asks.
"""

import os
import time

import numpy as np


def median_seconds(run, steps: int) -> float:
  """Median wall seconds of `steps` calls of `run`."""
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def interleave(runs: dict, *, warmup: int, rounds: int, steps: int,
               log=None) -> tuple[dict, dict]:
  """({name: [median step seconds per round]}, {name: [load per round]}).

  `log(name, round, seconds, load)`, when given, hears of each round.
  """
  for run in runs.values():
    for _ in range(warmup):
      run()
  times = {name: [] for name in runs}
  loads = {name: [] for name in runs}
  for i in range(rounds):
    for name, run in runs.items():
      loads[name].append(os.getloadavg()[0])
      times[name].append(median_seconds(run, steps))
      if log:
        log(name, i, times[name][-1], loads[name][-1])
  return times, loads


def summary_line(name: str, times: list, loads: list, *, scale: float = 1e3,
                 unit: str = "ms", width: int = 15) -> str:
  """`name: median step X unit [min-max] over n rounds (...), load ...`."""
  t = np.asarray(times) * scale
  return (f"{name + ':':<{width}} median step {np.median(t):.1f} {unit} "
          f"[{t.min():.1f}-{t.max():.1f}] over {len(t)} rounds "
          f"({'/'.join(f'{x:.1f}' for x in t)}), load "
          f"{'/'.join(f'{x:.1f}' for x in loads)}")


def ratio_text(numerator: str, denominator: str, times: dict) -> str:
  """`; numerator / denominator per round: median Rx [min-max]`."""
  r = np.asarray(times[numerator]) / np.asarray(times[denominator])
  return (f"; {numerator} / {denominator} per round: median "
          f"{np.median(r):.2f}x [{r.min():.2f}-{r.max():.2f}]")
