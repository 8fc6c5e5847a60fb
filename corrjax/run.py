"""What `python -m corrjax.main` does in each mode.

  train  train (resuming), then every benchmark of `config.evals`;
  eval   every benchmark on the latest checkpoint of the workdir (or on the
         initialisation when the config trains nothing, or only on outside
         networks when every benchmark fuses networks from elsewhere);
  <job>  a method's own offline job (`method.JOBS`, e.g. pseudo-labelling).
"""

from collections.abc import Callable

import jax
import ml_collections

from corrjax import checkpointing
from corrjax import methods
from corrjax import networks
from corrjax import summaries
from corrjax import train as train_lib
from corrjax.evals import runner

MODES = ("train", "eval")


def active_evals(config: ml_collections.ConfigDict) -> dict:
  """Benchmarks of `config.evals` whose source is not 'none'."""
  return {name: bench for name, bench in (config.get("evals") or {}).items()
          if bench.source != "none"}


def evaluate(config: ml_collections.ConfigDict, tree: dict | None,
             step: int | None, workdir: str, *,
             log: Callable[[str], None] = print) -> dict:
  """Scores `tree` (this run's state as a plain tree) on every benchmark."""
  evals = active_evals(config)
  if not evals:
    return {}
  writer = summaries.create_writer(workdir, enabled=jax.process_index() == 0)
  try:
    return runner.evaluate(
        evals, lambda name: networks.for_benchmark(config, name, tree,
                                                   step or 0),
        workdir, step=step, data_root=config.get("data", {}).get("root", ""),
        log=log, writer=writer)
  finally:
    writer.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       log: Callable[[str], None] = print,
                       stop=None) -> dict:
  """Trains (resuming), then evaluates every benchmark of `config.evals`."""
  for name, bench in active_evals(config).items():
    networks.check_fusion(name, bench)  # Before hours of training.
  if config.get("fusion_note"):
    log(config.fusion_note)
  schedule = getattr(methods.get(config.method), "train_schedule", None)
  if schedule is not None:  # A method whose run is several train calls.
    state = schedule(config, workdir, train=train_lib.train, log=log,
                     stop=stop)
  else:
    state = train_lib.train(config, workdir, log=log, stop=stop)
  tree = networks.state_tree(state)
  return evaluate(config, tree, int(tree["step"]), workdir, log=log)


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                     log: Callable[[str], None] = print) -> dict:
  """`--mode=eval`: the latest checkpoint, the init, or outside networks."""
  if not networks.needs_own_network(active_evals(config)):
    return evaluate(config, None, None, workdir, log=log)
  if checkpointing.complete_steps(workdir):
    step, tree = checkpointing.restore_tree(workdir)
    log(f"evaluating the checkpoint of step {step}")
  elif not config.get("total_steps"):
    step, tree = 0, networks.initial_tree(config)
    log("evaluating the initialisation (this config trains nothing)")
  else:
    raise FileNotFoundError(f"no checkpoint in {workdir!r}/checkpoints; "
                            "train first (--mode=train).")
  return evaluate(config, tree, step, workdir, log=log)


def run_job(config: ml_collections.ConfigDict, workdir: str, job: str, *,
            log: Callable[[str], None] = print):
  """A method's offline job (`--mode=<job>`)."""
  jobs = getattr(methods.get(config.method), "JOBS", {})
  if job not in jobs:
    raise ValueError(f"unknown --mode={job!r} for method {config.method!r};"
                     f" choose from {sorted(MODES + tuple(jobs))}.")
  return jobs[job](config, workdir, log=log)
