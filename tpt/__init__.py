"""TPT: Think, Prune, Train. Plain functions shared by the top-level scripts.

Modules: io (files), extract (answers), metrics (pass@k), prompt (the one prompt builder),
models (resolving model names), backends (hf and vllm samplers), manifest (run records).
Scoring modules never import torch; only tpt/backends/vllm_backend.py imports vllm.
"""
__version__ = "0.1.0"
