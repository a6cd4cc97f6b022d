"""docs/guide.md's examples run as written: its ``sh`` blocks, in order, as one
script. They copy the backend template to a scratch folder, pass the contract kit
with it (--hardware my_backend:MyBackend), declare a model that is a file in a
zoo of one's own, and run the suites on it into a reports folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"


def guide_script() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks, f"{GUIDE} has no sh block"
    return "".join(blocks)


def test_guide_examples_run(tmp_path: Path) -> None:
    env = {**os.environ, "WORK": str(tmp_path),
           # `pytest` and `python` in the guide are this interpreter's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", guide_script()], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # The template passed every contract item (a host backend skips the
    # device-resident ones), and the suites judged the model.
    assert re.search(r"= \d+ passed(, \d+ skipped)? in", done.stdout), done.stdout[-4000:]
    assert "conv2d-fake-fp32  passed" in done.stdout, done.stdout[-4000:]
    assert (tmp_path / "reports" / "conv2d" / "result-fp32.json").is_file()
