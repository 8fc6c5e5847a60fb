"""Mask-VOS schedule in one run: phase 1, clustering rounds, resume.

In-process runs of the smoke network (one compile per phase, shared
through tests/conftest.py's compilation cache). The uninterrupted reference
goes through the entry point (`run.train_and_evaluate`) and is evaluated:
it is also Mask-VOS's end-to-end test. Each round's pseudo masks are
clustered with E of the checkpoint that ends the previous round and saved
beside the checkpoints; a run stopped inside a round, then killed in the
middle of the next round's clustering, resumes to exactly the parameters
and pseudo masks of an uninterrupted run. Also the offline
`--mode=pseudo_labels` job's outputs.
"""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from corrjax import checkpointing
from corrjax import config_defaults
from corrjax import interrupts
from corrjax import run
from corrjax import train
from corrjax.data import pseudo_masks
from corrjax.methods import mask_vos
from corrjax.methods import mask_vos_rounds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STEPS = 5  # Phase 1: step 1; round 1: steps 2-3; round 2: steps 4-5.


def _config(evaluate=False):
  """The smoke config over STEPS steps; `evaluate` keeps its synthetic
  benchmark (the reference run), else nothing is evaluated."""
  c = config_defaults.load(os.path.join(REPO, "configs/mask_vos.py:smoke"))
  c.total_steps, c.checkpoint_every_steps = STEPS, 2
  c.keep_checkpoints = STEPS  # The tests read the early ones.
  c.schedule.update(corr_steps=1, recluster_every=2)
  if not evaluate:
    c.evals = config_defaults.evals()
  return c


def _run(workdir, log=lambda m: None, stop=None):
  return mask_vos.train_schedule(_config(), workdir, train=train.train,
                                 log=log, stop=stop)


def _masks(workdir, k):
  out = mask_vos_rounds.round_dir(workdir, k)
  return {v: pseudo_masks.read_pseudo_masks(out, v)
          for v in sorted(os.listdir(out)) if v.startswith("synth_")}


_REFERENCE = {}


@pytest.fixture
def reference(tmp_path_factory):
  """(workdir, printed lines, results) of the uninterrupted schedule, run
  and evaluated by the entry point (made once): also Mask-VOS's
  end-to-end run (tests/run_test.py checks the other methods')."""
  # Kept in a module global, not by fixture scope: an xdist worker tears
  # down even session fixtures whenever its queue of tests runs dry.
  if not _REFERENCE:
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    lines = []
    out = run.train_and_evaluate(_config(evaluate=True), workdir,
                                 log=lines.append)
    _REFERENCE["run"] = workdir, lines, out
  return _REFERENCE["run"]


@pytest.mark.slow
def test_schedule_trains_and_evaluates(reference,
                                       check_trained_and_evaluated):
  workdir, lines, out = reference
  check_trained_and_evaluated(_config(evaluate=True), workdir, out, lines)


def test_rounds_of_the_schedule():
  c = _config()
  assert mask_vos_rounds.rounds(c) == [(0, 1, 0), (1, 3, 1), (3, 5, 2)]
  c.total_steps = 200
  c.schedule.update(corr_steps=100, recluster_every=60)
  assert mask_vos_rounds.rounds(c) == [(0, 100, 0), (100, 160, 1),
                                       (160, 200, 2)]
  c.schedule.corr_steps = 0
  assert mask_vos_rounds.rounds(c)[0] == (0, 60, 1)
  first = mask_vos_rounds.round_config(c, "/w", 100, 0)
  assert first.loss.seg_weight == 0 and not first.data.masks_dir
  later = mask_vos_rounds.round_config(c, "/w", 160, 1)
  assert later.total_steps == 160 and later.loss.seg_weight == 1.0
  assert later.data.masks_dir == "/w/pseudo_masks/round_1"
  assert later.optim.learning_rate == c.schedule.seg_learning_rate


@pytest.mark.slow
def test_each_round_clusters_with_the_checkpoint_that_starts_it(reference,
                                                                 tmp_path):
  workdir, lines, _ = reference
  assert any("round 1: clustering with E of step 1" in l for l in lines)
  assert any("round 2: clustering with E of step 3" in l for l in lines)
  # Rounds 1 and 2 differ only in their last step, which the step does not
  # read: round 2 reuses round 1's compiled step (corrjax/compiled_steps.py).
  compiled = [l for l in lines if l.startswith("compiled the train step")]
  assert len(compiled) == 3 and "reused" in compiled[2], compiled
  assert checkpointing.complete_steps(workdir)[-1] == STEPS
  _, tree = checkpointing.restore_tree(workdir, 3)
  again = str(tmp_path / "again")
  mask_vos_rounds.cluster_round(_config(), tree, again,
                                model=mask_vos.build_model(_config()))
  mine = _masks(workdir, 2)
  for video, masks in mine.items():
    np.testing.assert_array_equal(
        pseudo_masks.read_pseudo_masks(again, video), masks)
  # Training changed E between the rounds: other pseudo masks.
  assert any(np.any(a != b) for a, b in zip(_masks(workdir, 1).values(),
                                            mine.values()))


@pytest.mark.slow
def test_correspondence_phase_leaves_v_and_d_unchanged(reference):
  workdir, lines, _ = reference
  _, tree = checkpointing.restore_tree(workdir, 1)
  init = mask_vos.initial_tree(_config())
  # Same init up to the last float bit (train.py jits it with shardings);
  # one Adam step moves every trained weight by ~lr = 1e-4.
  for part in ("mask_encoder", "decoder"):
    for a, b in zip(jax.tree_util.tree_leaves(init["params"][part]),
                    jax.tree_util.tree_leaves(tree["params"][part])):
      np.testing.assert_allclose(a, b, atol=1e-6)
  moved = np.abs(init["params"]["encoder"]["key"]["kernel"] -
                 tree["params"]["encoder"]["key"]["kernel"])
  assert moved.max() > 1e-5
  assert any(l.startswith("step 1/1 ") for l in lines)


@pytest.mark.slow
def test_stopped_then_killed_while_clustering_resumes_identically(
    reference, tmp_path):
  workdir = str(tmp_path / "interrupted")
  stop = interrupts.StopRequest()

  def stop_at_step_2(message):
    if message.startswith("step 2/"):
      stop.request("test")

  with pytest.raises(KeyboardInterrupt):
    _run(workdir, log=stop_at_step_2, stop=stop)
  assert checkpointing.complete_steps(workdir)[-1] == 2  # Inside round 1.

  def kill_while_clustering(message):
    if message.startswith("clustered videos 1-"):
      raise KeyboardInterrupt("killed")

  with pytest.raises(KeyboardInterrupt):
    _run(workdir, log=kill_while_clustering)
  round_2 = mask_vos_rounds.round_dir(workdir, 2)
  assert os.path.isdir(round_2 + ".tmp") and not os.path.isdir(round_2)
  assert checkpointing.complete_steps(workdir)[-1] == 3

  lines = []
  _run(workdir, log=lines.append)
  assert not any("round 1: clustering" in l for l in lines)  # Kept.
  ref_dir, _, _ = reference
  for k in (1, 2):
    ref, mine = _masks(ref_dir, k), _masks(workdir, k)
    assert sorted(ref) == sorted(mine)
    for v in ref:
      np.testing.assert_array_equal(mine[v], ref[v])
  _, ref_tree = checkpointing.restore_tree(ref_dir, STEPS)
  _, tree = checkpointing.restore_tree(workdir, STEPS)
  for part in ("params", "batch_stats", "opt_state"):
    for a, b in zip(jax.tree_util.tree_leaves(ref_tree[part]),
                    jax.tree_util.tree_leaves(tree[part])):
      np.testing.assert_array_equal(a, b)


def test_pseudo_labels_job_outputs(tmp_path):
  config = _config()
  workdir = str(tmp_path)
  summary = mask_vos.JOBS["pseudo_labels"](config, workdir,
                                           log=lambda m: None)
  out = os.path.join(workdir, "pseudo_masks", "job_step_0")
  videos = sorted(v for v in os.listdir(out) if v.startswith("synth_"))
  s = config.data.synthetic
  assert len(videos) == s.num_videos
  m = config.clustering.num_clusters
  for v in videos:
    names = sorted(os.listdir(os.path.join(out, v)))
    assert names == [f"{t:05d}.png" for t in range(s.num_frames)]
    with Image.open(os.path.join(out, v, names[0])) as im:
      assert im.mode == "P" and im.size == (s.width, s.height)
    masks = pseudo_masks.read_pseudo_masks(out, v)
    kept = summary[v]["kept"]
    assert masks.max() <= kept <= m
    # Masks are cells upsampled 8x: pixel fractions are cell fractions.
    for k in range(1, kept + 1):
      assert (masks == k).mean() <= config.clustering.max_fraction
    np.testing.assert_allclose((masks > 0).mean(),
                               summary[v]["object_fraction"])
  grid = np.asarray(Image.open(os.path.join(out, "grids", f"{videos[0]}.png")))
  assert grid.shape == (3 * 32 + 8, 5 * 32 + 16, 3)
  with open(os.path.join(out, "summary.json")) as f:
    assert json.load(f) == summary
  assert len(os.listdir(os.path.join(out, "grids"))) == 1  # grid_videos.
  before = os.path.getmtime(os.path.join(out, videos[0], "00000.png"))
  again = mask_vos.JOBS["pseudo_labels"](config, workdir, log=lambda m: None)
  assert again == summary
  assert os.path.getmtime(os.path.join(out, videos[0], "00000.png")) == before
