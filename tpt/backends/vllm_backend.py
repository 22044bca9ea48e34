"""The vLLM backend (CUDA GPUs, or vLLM's CPU build). The only module that imports vllm, and only when a run asks
for it.

One request per question with SamplingParams(n=N): the prompt is prefilled once and its KV blocks are shared by
the N samples (the original sent the whole question set N times). Prefix caching stays on (every prompt shares
the template's tokens) and CUDA graphs stay on unless --enforce_eager.

Seeds: the request of question q carries seeds[q], and vLLM gives its n children seeds[q], seeds[q] + 1, ...
(vllm/v1/engine/parallel_sampling.py, the same in 0.32 and 0.33), each child drawing from a torch.Generator of
its own; so sample s of a question depends only on (seed, question, s), whichever call or batch it lands in.

On vLLM's CPU build, chunked prefill is off. A request whose prompt is only partly prefilled in a step has the
token sampled for it thrown away, and the model runner then rewinds that request's generator by its Philox
offset (GPUModelRunner._bookkeeping_sync). A CPU torch.Generator has no offset: with seeded requests and more
prompt tokens waiting than one step's budget (16 GSM8K prompts x n=4 already), the worker raised
"RuntimeError: CPU Generator does not use offset" and the engine died. Without chunked prefill every prompt is
prefilled whole in one step (vLLM then raises the step budget to max_model_len), so nothing is rewound.

Data parallel is tpt/ray_sampling.py's: one VLLMBackend in each Ray replica, on the GPUs Ray gives it. (vLLM
0.33's VLLM_DP_* offline data-parallel mode is for MoE models only; ParallelConfig refuses it for dense ones such
as Gemma, Llama and SmolLM2.)

What vLLM does not allow or does not do as asked is handled here:
  * temperature 0 with n > 1 is refused by SamplingParams, and greedy replies are all the same: one is decoded
    and copied N times;
  * ignore_eos only lifts the tokenizer's eos; the end tokens we pass as stop_token_ids would still stop a reply,
    so none are passed then;
  * a request that finishes 'abort' or 'error' has no reply: that is a BackendError, never a sample;
  * an engine that dies (EngineDeadError, its process killed) is a BackendError of one line naming the engine;
    vLLM 0.32 would leave a call waiting for ever on a killed engine process, so watch_engine wakes it.
"""
import os
import threading

from tpt.backends import BackendError

def llm_kwargs(model_path, engine, on_cpu=False):
    """The keyword arguments of vllm.LLM for one engine (engine: tpt.backends.EngineConfig's fields; on_cpu: vLLM's
    CPU build, see the module docstring)."""
    return dict(model=model_path, dtype=engine.dtype, seed=engine.seed, max_model_len=engine.max_model_len,
                tensor_parallel_size=engine.tensor_parallel_size,
                gpu_memory_utilization=engine.gpu_memory_utilization, enable_prefix_caching=True,
                enforce_eager=engine.enforce_eager, trust_remote_code=engine.trust_remote_code,
                **({"enable_chunked_prefill": False} if on_cpu else {}))


def on_cpu_platform():
    """True where vLLM runs on the CPU (its CPU build), as vLLM's own platform detection says."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def sampling_kwargs(sampling, seed, stop_ids):
    """The keyword arguments of vllm.SamplingParams for one question of a tpt.backends.Sampling (greedy: n=1,
    copied by run_requests)."""
    greedy = sampling.temperature == 0
    return dict(
        n=1 if greedy else sampling.num_samples,
        temperature=sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        max_tokens=sampling.max_tokens,
        # The n children of a request get seeds seed, seed+1, ... (vLLM's parallel sampling).
        seed=seed,
        stop_token_ids=[] if sampling.ignore_eos else list(stop_ids),
        ignore_eos=sampling.ignore_eos,
        stop=list(sampling.stop),
    )


def tokens_prompt(ids):
    from vllm.inputs import TokensPrompt

    return TokensPrompt(prompt_token_ids=list(ids))


def run_requests(llm, prompt_token_ids, seeds, sampling, stop_ids):
    """One request per prompt; per prompt a list of sampling.num_samples {text, finish_reason, num_tokens}
    (sampling: a tpt.backends.Sampling). vLLM's own errors (a prompt it refuses, a dead engine) propagate; the
    caller names the engine."""
    from vllm import SamplingParams

    from tpt.backends import cut_at_stop

    if not prompt_token_ids:
        return []
    num_samples, stop = sampling.num_samples, sampling.stop
    prompts = [tokens_prompt(ids) for ids in prompt_token_ids]
    params = [SamplingParams(**sampling_kwargs(sampling, seed, stop_ids)) for seed in seeds]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    results = []
    for i, output in enumerate(outputs):
        samples = []
        for o in sorted(output.outputs, key=lambda o: o.index):
            if o.finish_reason not in ("stop", "length"):
                raise BackendError(f"vLLM: the request for prompt {i} of this call finished with "
                                   f"{o.finish_reason!r} (stop_reason {o.stop_reason!r}) after {len(o.token_ids)} "
                                   "tokens; finished calls are journaled, run again to resume")
            text, cut = cut_at_stop(o.text, stop)
            samples.append({"text": text, "finish_reason": "stop" if cut else o.finish_reason,
                            "num_tokens": len(o.token_ids)})
        if len(samples) == 1 and num_samples > 1:  # greedy
            samples = [dict(samples[0]) for _ in range(num_samples)]
        results.append(samples)
    return results


def watch_engine(llm, done, poll_s=1.0):
    """Until `done` is set: when vLLM's client marks its engine dead, hand the waiting generate call an
    EngineDeadError. (vLLM 0.32's LLM waits for ever on a killed engine-core process: the client's monitor thread
    marks the engine dead and stops the thread that reads its outputs, but nothing wakes the caller, which waits on
    that thread's queue. A version whose client has no such queue is left alone.)"""
    client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    resources, outputs = getattr(client, "resources", None), getattr(client, "outputs_queue", None)
    if resources is None or outputs is None or not hasattr(resources, "engine_dead"):
        return
    while not done.wait(poll_s):
        if resources.engine_dead:
            from vllm.v1.engine.exceptions import EngineDeadError

            outputs.put_nowait(EngineDeadError())
            return


def visible_gpus():
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES spells them."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    import torch

    return ",".join(str(i) for i in range(torch.cuda.device_count()))


def _describe(error):
    """An exception as one line (vLLM's pydantic errors span several), cut at 500 characters."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_path, stop_ids, engine):
        """engine: tpt.backends.EngineConfig's fields (a SamplingConfig has them)."""
        from vllm import LLM

        self.stop_ids = list(stop_ids)
        on_cpu = on_cpu_platform()
        where = "CPU" if on_cpu else f"CUDA_VISIBLE_DEVICES={visible_gpus()}"
        self.engine_name = f"vLLM engine ({where})"
        try:
            self.llm = LLM(**llm_kwargs(model_path, engine, on_cpu=on_cpu))
        except Exception as e:  # vLLM has logged the details above; the run ends with one line
            raise BackendError(f"{self.engine_name} failed to start: {_describe(e)}") from e

    def generate(self, prompt_token_ids, sampling, seeds):
        done = threading.Event()
        threading.Thread(target=watch_engine, args=(self.llm, done), daemon=True, name="tpt-vllm-watch").start()
        try:
            return run_requests(self.llm, prompt_token_ids, seeds, sampling, self.stop_ids)
        except BackendError:
            raise
        except Exception as e:  # EngineDeadError when its process died; vLLM has logged the cause above
            raise BackendError(f"{self.engine_name} failed while sampling: {_describe(e)}; finished calls are "
                               "journaled, run again to resume") from e
        finally:
            done.set()

    def close(self):
        self.llm = None
