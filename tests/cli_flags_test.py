"""`--config` files import each other (`from configs import fc`): the
folder above configs/ goes on sys.path before the flags parse (load) them,
in both `--config=path` and `--config path` forms."""

import sys

import pytest

from corrjax import cli_flags


@pytest.mark.parametrize("argv", [
    ["prog", "--config={}/configs/sfc.py:smoke", "--mode=eval"],
    ["prog", "--workdir=w", "--config", "{}/configs/sfc.py"]])
def test_config_folder_parent_goes_on_the_path(tmp_path, monkeypatch, argv):
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "sfc.py").write_text("")
  monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
  cli_flags.make_config_importable([a.format(tmp_path) for a in argv])
  assert sys.path[0] == str(tmp_path)


def test_other_flags_and_other_folders_leave_the_path(tmp_path, monkeypatch):
  monkeypatch.setattr(sys, "path", list(sys.path))
  before = list(sys.path)
  cli_flags.make_config_importable(
      ["prog", f"--config={tmp_path / 'mine.py'}", "--workdir=/configs/x",
       "--config"])
  assert sys.path == before
