"""TPT: Think, Prune, Train. Plain functions shared by the top-level scripts (the package never imports a script).

Files and runs: io (the one reader/writer), manifest (manifest.json), stage (the finished-run protocol: skip,
refuse or redo), journal (Think/Eval's resume journal), layout (the loop's folder names).
Questions and prompts: data (GSM8K and reasoning-gym question files), split (split by question, held-out checks),
prompt (the one prompt builder).
Scoring: extract (the one answer extractor), metrics (pass@k, maj@k, intervals), scoring (score a samples folder,
prune), report (per-round tables, paired tests, verdicts).
Sampling: generate (the Think/Eval driver), backends (hf_backend, vllm_backend: one interface; cpu_attention:
hf_backend's float32 decode attention on the CPU), ray_sampling (engine replicas on a Ray cluster, --ray), models
(model names, the embedded model), device (what the CPU/GPU can do).
Training: train (Train as one story), train_args (its flags), train_data (kept traces -> checked examples).

Scoring modules never import torch; only tpt/backends/vllm_backend.py imports vllm.
"""
__version__ = "0.1.0"
