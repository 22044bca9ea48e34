"""Every top-level script answers --help with exit 0 (found by glob, so new scripts are covered), quickly,
because heavy imports live inside functions. Runtime budget: < 20 s.
"""
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT

SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))


def test_there_are_scripts():
    assert {"evmath.py", "make_json.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_zero(script):
    result = subprocess.run([PYTHON, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
