"""corrjax's modules import each other without a circle, and the training
loop does not import the evaluators (function-level imports included)."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "corrjax")


def _modules() -> dict[str, str]:
  """{dotted module name: file path} of every corrjax module."""
  found = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3]
      dotted = rel.replace(os.sep, ".").removesuffix(".__init__")
      found[dotted] = path
  return found


def _imports(path: str, modules: dict[str, str]) -> set[str]:
  """corrjax modules imported anywhere in a file."""
  out = set()
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      # `from pkg import mod` depends on mod; `from mod import name` on mod.
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in
               modules else node.module for a in node.names]
    else:
      continue
    for name in names:
      if name in modules:
        out.add(name)
  return out


def _graph():
  modules = _modules()
  return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def _cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, stack)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [])
      if found:
        return found
  return None


def test_no_import_cycle():
  assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_cycle_finder_finds_one():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_training_does_not_import_the_evaluators():
  graph = _graph()
  reached, todo = set(), ["corrjax.train"]
  while todo:
    node = todo.pop()
    if node not in reached:
      reached.add(node)
      todo.extend(graph[node])
  assert "corrjax.evals.runner" not in reached
  assert "corrjax.networks" not in reached
  assert "corrjax.run" not in reached
