"""Atomic writes: the content round-trips, nothing temporary is left, and the file is readable by others."""

import os
import stat

from pcnas_tf import files


def test_atomic_writes_replace_the_file_and_leave_it_readable_by_others(tmp_path):
  path = str(tmp_path / "result.json")
  files.write_json(path, {"a": 1})
  files.write_json(path, {"a": 2})
  assert files.read_json(path, "result") == {"a": 2}
  assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  files.write_text(str(tmp_path / "page.html"), "<p>é</p>")
  assert (tmp_path / "page.html").read_text(encoding="utf-8") == "<p>é</p>"
