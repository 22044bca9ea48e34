"""Shared test fixtures: paths to the real data in ../shared/data and the repository root."""
import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
GSM8K = SHARED_DATA / "gsm8k"
TPT_REF = SHARED_DATA / "tpt_reference"
PYTHON = sys.executable  # scripts run under the same interpreter (the .venv) as the tests


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA} (set TPT_SHARED_DATA)")
    return SHARED_DATA


def free_port():
    """A port nothing on this machine listens on now (a fixed one clashes when two test runs share the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
