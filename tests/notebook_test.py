"""notebooks/corrjax_colab.ipynb runs end to end on CPU at toy size."""

import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "corrjax_colab.ipynb")


def _sources(notebook):
  return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_ipynb_and_py_are_in_sync():
  ipynb = nbformat.read(NOTEBOOK, as_version=4)
  py = jupytext.read(NOTEBOOK[:-len(".ipynb")] + ".py")
  assert _sources(ipynb) == _sources(py), (
      "run: jupytext --sync notebooks/corrjax_colab.py")


@pytest.mark.slow
def test_notebook_executes_at_toy_size(monkeypatch):
  monkeypatch.setenv("CORRJAX_NOTEBOOK_TOY", "1")
  monkeypatch.setenv("MPLBACKEND",
                     "module://matplotlib_inline.backend_inline")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep +
                     os.environ.get("PYTHONPATH", ""))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      notebook, timeout=120, kernel_name="python3",
      resources={"metadata": {"path": REPO}})
  client.execute()
  text = "\n".join(o.get("text", "") for c in notebook.cells
                   if c.cell_type == "code" for o in c.get("outputs", []))
  assert "J&F" in text
  images = [o for c in notebook.cells if c.cell_type == "code"
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 3  # Mask, overlays, heat maps.
