"""The vLLM backend (CUDA GPUs). The only module that imports vllm, and only when a run asks for it.

One request per question with SamplingParams(n=N): the prompt is prefilled once and its KV blocks are shared by
the N samples (the original sent the whole question set N times). Prefix caching stays on (every prompt shares
the template's tokens) and CUDA graphs stay on unless --enforce_eager.

Data parallel follows vLLM's offline data-parallel example: one process per DP rank, each with its own LLM
(tensor_parallel_size GPUs each) and the VLLM_DP_* variables set, every rank taking its share of each call.
Only one node: multi-node DP is not wired here.
"""
import multiprocessing
import os

from tpt.backends import derive_seed


def build_llm(model_path, *, dtype, max_model_len, tensor_parallel_size, enforce_eager, trust_remote_code, seed):
    from vllm import LLM

    return LLM(
        model=model_path,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        enable_prefix_caching=True,
        enforce_eager=enforce_eager,
        trust_remote_code=trust_remote_code,
    )


def run_requests(llm, prompt_token_ids, num_samples, temperature, top_p, max_tokens, seeds, stop_ids, ignore_eos):
    """One request per prompt with n=num_samples; per prompt a list of {text, finish_reason, num_tokens}."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    if not prompt_token_ids:
        return []
    prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_token_ids]
    params = [
        SamplingParams(
            n=num_samples,
            # vLLM treats temperature 0 as greedy; the child requests of n>1 get seeds seed, seed+1, ...
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_tokens,
            seed=seed,
            stop_token_ids=list(stop_ids),
            ignore_eos=ignore_eos,
        )
        for seed in seeds
    ]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    results = []
    for output in outputs:
        samples = sorted(output.outputs, key=lambda o: o.index)
        results.append([
            {
                "text": o.text,
                "finish_reason": "stop" if o.finish_reason == "stop" else "length",
                "num_tokens": len(o.token_ids),
            }
            for o in samples
        ])
    return results


def _dp_worker(conn, rank, size, master_ip, master_port, llm_options, stop_ids):
    """One data-parallel rank: builds its LLM, then answers (prompts, sampling) messages until told to stop."""
    os.environ["VLLM_DP_RANK"] = str(rank)
    os.environ["VLLM_DP_RANK_LOCAL"] = str(rank)
    os.environ["VLLM_DP_SIZE"] = str(size)
    os.environ["VLLM_DP_MASTER_IP"] = master_ip
    os.environ["VLLM_DP_MASTER_PORT"] = str(master_port)
    llm = build_llm(**llm_options)
    conn.send("ready")
    while True:
        message = conn.recv()
        if message is None:
            break
        prompts, sampling = message
        if prompts:
            conn.send(run_requests(llm, prompts, stop_ids=stop_ids, **sampling))
        else:
            # A rank with nothing to do still runs a placeholder request, as vLLM's DP example requires.
            run_requests(llm, [[0]], stop_ids=stop_ids, **{**sampling, "seeds": [0]})
            conn.send([])


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_path, stop_ids, dtype="auto", max_model_len=None, tensor_parallel_size=1,
                 data_parallel_size=1, enforce_eager=False, trust_remote_code=False, seed=0):
        self.stop_ids = list(stop_ids)
        options = dict(model_path=model_path, dtype=dtype, max_model_len=max_model_len,
                       tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager,
                       trust_remote_code=trust_remote_code, seed=seed)
        self.data_parallel_size = max(1, int(data_parallel_size))
        self.llm, self.workers = None, []
        if self.data_parallel_size == 1:
            self.llm = build_llm(**options)
            return
        from vllm.utils.network_utils import get_open_port

        port = get_open_port()
        context = multiprocessing.get_context("spawn")
        # Not daemonic: each rank starts vLLM engine processes of its own.
        for rank in range(self.data_parallel_size):
            parent, child = context.Pipe()
            proc = context.Process(target=_dp_worker, args=(child, rank, self.data_parallel_size, "127.0.0.1", port,
                                                             options, self.stop_ids))
            proc.start()
            self.workers.append((proc, parent))
        for proc, conn in self.workers:
            if conn.recv() != "ready":
                raise RuntimeError(f"vLLM data-parallel rank {proc.pid} failed to start")

    def generate(self, prompt_token_ids, num_samples, temperature, top_p, max_tokens, seed, ignore_eos=False):
        seeds = [derive_seed(seed, i) for i in range(len(prompt_token_ids))]
        sampling = dict(num_samples=num_samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                        ignore_eos=ignore_eos)
        if self.llm is not None:
            return run_requests(self.llm, prompt_token_ids, seeds=seeds, stop_ids=self.stop_ids, **sampling)
        size = self.data_parallel_size
        # Contiguous shares, as in vLLM's example; each question keeps the seed of its position in the call.
        bounds = [len(prompt_token_ids) * r // size for r in range(size + 1)]
        for r, (_, conn) in enumerate(self.workers):
            lo, hi = bounds[r], bounds[r + 1]
            conn.send((prompt_token_ids[lo:hi], {**sampling, "seeds": seeds[lo:hi]}))
        results = []
        for _, conn in self.workers:
            results.extend(conn.recv())
        return results

    def close(self):
        for proc, conn in self.workers:
            conn.send(None)
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        self.workers, self.llm = [], None
