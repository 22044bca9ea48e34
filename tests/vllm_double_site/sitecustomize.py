"""Installs the vLLM engine double (tests/vllm_double.py) in every Python process started with this folder on
PYTHONPATH and TPT_DOUBLE_DIR set: gen_synth.py / gen_eval.py subprocesses and their data-parallel workers."""
import os
import sys

if os.environ.get("TPT_DOUBLE_DIR"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import vllm_double

    vllm_double.install()
