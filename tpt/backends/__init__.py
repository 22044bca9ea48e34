"""One backend interface, two implementations: vLLM (CUDA GPUs, or vLLM's CPU build) and transformers (any device).

A backend is built once per run, says which it is in `backend.name` ('vllm' or 'hf') and answers one call:

    backend.generate(prompt_token_ids, sampling, seeds)
        -> for each prompt, a list of sampling.num_samples dicts {text, finish_reason ('stop'|'length'), num_tokens}

Prompts arrive as token ids (from tpt.prompt.encode_prompt), so both backends see exactly the same tokens.
`sampling` (a Sampling) says how: `temperature == 0` means greedy decoding; `ignore_eos=True` runs every reply to
its token limit (no stop token). `seeds` holds one seed per prompt (question_seeds: from the run's seed and the
question's id), and sample s of a prompt draws from seed `seeds[i] + s` (vLLM's own rule for the n samples of a
request). So a sample depends only on (seed, question,
sample index): the same whichever call, batch, worker or machine its question lands in, and after a resume.
`sampling.stop` holds strings that end a reply (the harness's `until`, tpt.prompt.stop_strings): a reply ends once one
appears and its text is cut before the first of them (cut_at_stop, the one rule both backends apply).
"""
import dataclasses
import hashlib
import importlib.util

from tpt.io import DataError

BACKENDS = ("auto", "vllm", "hf")


class BackendError(DataError):
    """The sampler failed (an engine that cannot start, a request it aborted). Scripts report it like bad input:
    one line, a non-zero exit, no sample files; the batches already journaled are kept for the resume."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How one generate call samples each prompt (vLLM's SamplingParams, less the seed: seeds come per prompt)."""

    num_samples: int
    temperature: float  # 0: greedy
    top_p: float = 1.0
    max_tokens: int = 256
    ignore_eos: bool = False  # run every reply to max_tokens
    stop: tuple = ()  # strings that end a reply, cut from its text


def derive_seed(seed, *keys):
    """A 31-bit seed from a base seed and keys (batch index, question index): stable across runs and machines."""
    text = "/".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


VLLM_CPU_SEQUENCES = 256  # vLLM's max_num_seqs on a CPU (offline LLM class)
AUTO_ROWS = 512  # transformers, --batch_size 0: rows decoded together at most (docs/benchmarks.md: by width)
KV_CACHE_SHARE = 0.25  # transformers, --batch_size 0: the KV cache's share of the memory at most
SEED_SCHEME = "question"  # recorded in a run's journal: the seeds come from question ids (question_seeds)


def question_seeds(seed, qnums):
    """One seed per question, from the run's seed and the question's id (its idt), never from its place in a call."""
    return [derive_seed(seed, "question", q) for q in qnums]


def cut_at_stop(text, stop):
    """(text before the first occurrence of any stop string, whether there was one): lm-eval's
    postprocess_generated_text, which splits on each stop string in turn."""
    cut = text
    for term in stop:
        if term:
            cut = cut.split(term, 1)[0]
    return cut, len(cut) != len(text)


def stop_window(tokenizer, stop):
    """How many last tokens to decode when looking for a stop string: its length in tokens plus two, as the
    harness's MultiTokenEOSCriteria looks back (a model may write in other pieces what the stop string encodes)."""
    return max((len(tokenizer.encode(s, add_special_tokens=False)) + 2 for s in stop if s), default=0)

def _vllm_cpu_build():
    """True when the installed vLLM is its CPU build (the vllm-cpu distribution, or a version tagged +cpu):
    vLLM's own platform test, read from the package metadata without importing vllm (seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "cpu" in version("vllm")
    except PackageNotFoundError:
        pass
    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


def vllm_status():
    """(platform, reason): the platform vLLM runs on here, 'cuda' (installed and a CUDA device visible) or 'cpu'
    (vLLM's CPU build), or None with the reason it cannot run."""
    if importlib.util.find_spec("vllm") is None:
        return None, ("vllm is not installed (pip install -r requirements-vllm.txt on a CUDA machine, "
                      "make vllm-cpu for vLLM's CPU build)")
    if _vllm_cpu_build():
        return "cpu", "vLLM's CPU build is installed"
    import torch

    if not torch.cuda.is_available():
        return None, "no CUDA device is visible (and the installed vllm is not its CPU build)"
    return "cuda", "vllm is installed and CUDA is available"


def select_backend(name="auto"):
    """The backend to use: 'vllm' or 'hf'. 'auto' picks vLLM on a CUDA GPU where it is installed, else
    transformers (on a CPU a vLLM engine takes tens of seconds to start, so an explicit 'vllm' asks for it);
    an explicit 'vllm' where vLLM has no platform is a ValueError saying why."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    platform, reason = vllm_status()
    if name == "vllm" and platform is None:
        raise ValueError(f"--backend vllm: {reason}")
    if name != "auto":
        return name
    return "vllm" if platform == "cuda" else "hf"


def questions_per_call(backend, num_samples, batch_size):
    """Questions handed to one generate call, which is also one journal entry of a resumable run.

    transformers: four batches' worth of sequences (4 x batch_size), so rows that finish are refilled from the
    same call and the batch runs narrow only at a call's end. vLLM schedules its own batches, so it gets many
    questions at once and a journal entry every few thousand sequences; on vLLM's CPU build, one engine batch
    (its CPU default of 256 sequences at once) per call, so a killed run loses minutes there, not hours.
    """
    if backend == "hf":
        return max(1, 4 * (batch_size or AUTO_ROWS) // num_samples)
    if _vllm_cpu_build():
        return max(1, VLLM_CPU_SEQUENCES // num_samples)
    return max(64, 4096 // num_samples)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How a backend loads its model and runs: the fields of tpt.generate.SamplingConfig that reach the engine,
    with their defaults, for a caller that builds a backend without a script (tests, benchmarks)."""

    dtype: str = "auto"
    max_model_len: int | None = None
    batch_size: int = 0  # transformers: rows decoded together (0: auto, HFBackend.rows_for)
    tensor_parallel_size: int = 1  # vLLM
    gpu_memory_utilization: float = 0.92  # vLLM
    enforce_eager: bool = False  # vLLM
    trust_remote_code: bool = False
    seed: int = 0
    attn_implementation: str | None = None  # transformers
    template: str | None = None  # transformers: the prompts' template, whose shared opening is prefilled once


def load_backend(name, model_path, tokenizer, engine=EngineConfig()):
    """Build the named backend ('vllm' or 'hf', as select_backend returns) for a resolved model path; `engine`
    holds EngineConfig's fields (a SamplingConfig, passed whole, does)."""
    from tpt.models import load_generation_config, stop_token_ids

    stop_ids = stop_token_ids(tokenizer, load_generation_config(model_path, trust_remote_code=engine.trust_remote_code))
    if not stop_ids:
        raise ValueError(f"{model_path}: neither the generation config nor the tokenizer names an end token")
    if name == "vllm":
        from tpt.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model_path, stop_ids, engine)
    if name == "hf":
        from tpt.backends.hf_backend import HFBackend

        return HFBackend(model_path, tokenizer, stop_ids, engine)
    raise ValueError(f"unknown backend {name!r}: call select_backend first")
