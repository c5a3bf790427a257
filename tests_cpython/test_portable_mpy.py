"""Every portable test file, run again under the real MicroPython binary."""
import glob
import os
import subprocess

import pytest

from helpers import mprun

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "portable", "test_*.py")))


@pytest.mark.parametrize("name", FILES)
def test_portable_file_under_micropython(name, micropython, record_property, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([micropython, os.path.join(HERE, "mp_run.py"), os.path.join(HERE, "portable", name)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=HERE)
    mprun.check(r, record_property, "mpy_passed")
