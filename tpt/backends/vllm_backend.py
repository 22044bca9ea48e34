"""The vLLM backend (CUDA GPUs). The only module that imports vllm, and only when a run asks for it.

One request per question with SamplingParams(n=N): the prompt is prefilled once and its KV blocks are shared by
the N samples (the original sent the whole question set N times). Prefix caching stays on (every prompt shares
the template's tokens) and CUDA graphs stay on unless --enforce_eager.

Data parallel is independent engines: one process per copy of the model, each seeing only its own group of
tensor_parallel_size GPUs through CUDA_VISIBLE_DEVICES, the questions of each call dealt out to them and the
results put back in question order. (vLLM 0.33's VLLM_DP_* offline data-parallel mode is for MoE models only;
ParallelConfig refuses it for dense ones such as Gemma, Llama and SmolLM2.) Only one node.

What vLLM does not allow or does not do as asked is handled here:
  * temperature 0 with n > 1 is refused by SamplingParams, and greedy replies are all the same: one is decoded
    and copied N times;
  * ignore_eos only lifts the tokenizer's eos; the end tokens we pass as stop_token_ids would still stop a reply,
    so none are passed then;
  * a request that finishes 'abort' or 'error' has no reply: that is a BackendError, never a sample.
"""
import multiprocessing
import multiprocessing.connection
import os

from tpt.backends import BackendError

START_TIMEOUT_S = 3600  # model download and CUDA graph capture of a large model fit well inside this


def llm_kwargs(model_path, engine):
    """The keyword arguments of vllm.LLM for one engine (engine: tpt.backends.EngineConfig's fields)."""
    return dict(model=model_path, dtype=engine.dtype, seed=engine.seed, max_model_len=engine.max_model_len,
                tensor_parallel_size=engine.tensor_parallel_size,
                gpu_memory_utilization=engine.gpu_memory_utilization, enable_prefix_caching=True,
                enforce_eager=engine.enforce_eager, trust_remote_code=engine.trust_remote_code)


def sampling_kwargs(num_samples, temperature, top_p, max_tokens, seed, stop_ids, ignore_eos):
    """The keyword arguments of vllm.SamplingParams for one question (greedy: n=1, copied by run_requests)."""
    greedy = temperature == 0
    return dict(
        n=1 if greedy else num_samples,
        temperature=temperature,
        top_p=1.0 if greedy else top_p,
        max_tokens=max_tokens,
        # The n children of a request get seeds seed, seed+1, ... (vLLM's parallel sampling).
        seed=seed,
        stop_token_ids=[] if ignore_eos else list(stop_ids),
        ignore_eos=ignore_eos,
    )


def tokens_prompt(ids):
    from vllm.inputs import TokensPrompt

    return TokensPrompt(prompt_token_ids=list(ids))


def run_requests(llm, prompt_token_ids, seeds, sampling, stop_ids):
    """One request per prompt; per prompt a list of num_samples {text, finish_reason, num_tokens}. sampling: the
    generate call's {num_samples, temperature, top_p, max_tokens, ignore_eos}."""
    from vllm import SamplingParams

    if not prompt_token_ids:
        return []
    num_samples = sampling["num_samples"]
    prompts = [tokens_prompt(ids) for ids in prompt_token_ids]
    params = [SamplingParams(**sampling_kwargs(num_samples, sampling["temperature"], sampling["top_p"],
                                               sampling["max_tokens"], seed, stop_ids, sampling["ignore_eos"]))
              for seed in seeds]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    results = []
    for i, output in enumerate(outputs):
        samples = []
        for o in sorted(output.outputs, key=lambda o: o.index):
            if o.finish_reason not in ("stop", "length"):
                raise BackendError(f"vLLM: the request for prompt {i} of this call finished with "
                                   f"{o.finish_reason!r} (stop_reason {o.stop_reason!r}) after {len(o.token_ids)} "
                                   "tokens; finished calls are journaled, run again to resume")
            samples.append({"text": o.text, "finish_reason": o.finish_reason, "num_tokens": len(o.token_ids)})
        if len(samples) == 1 and num_samples > 1:  # greedy
            samples = [dict(samples[0]) for _ in range(num_samples)]
        results.append(samples)
    return results


def gpu_groups(data_parallel_size, tensor_parallel_size, visible):
    """CUDA_VISIBLE_DEVICES of each engine: consecutive groups of tensor_parallel_size of the visible GPUs."""
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    needed = data_parallel_size * tensor_parallel_size
    if len(devices) < needed:
        raise BackendError(f"--data_parallel_size {data_parallel_size} x --tensor_parallel_size "
                           f"{tensor_parallel_size} needs {needed} GPUs, {len(devices)} visible")
    return [",".join(devices[r * tensor_parallel_size:(r + 1) * tensor_parallel_size])
            for r in range(data_parallel_size)]


def visible_gpus():
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES spells them."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    import torch

    return ",".join(str(i) for i in range(torch.cuda.device_count()))


def _describe(error):
    """An exception as one line (vLLM's pydantic errors span several), cut at 500 characters."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


def _worker(conn, gpus, options, stop_ids):
    """One data-parallel engine on its own GPUs; answers (prompts, sampling) messages until told to stop."""
    # Before anything touches CUDA: this engine sees its own GPUs only.
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        from vllm import LLM

        llm = LLM(**options)
    except BaseException as e:
        conn.send(("error", _describe(e)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        prompts, seeds, sampling = message
        try:
            conn.send(("ok", run_requests(llm, prompts, seeds, sampling, stop_ids)))
        except BackendError as e:
            conn.send(("error", str(e)))
        except Exception as e:
            conn.send(("error", _describe(e)))


class _Worker:
    def __init__(self, rank, gpus, process, conn):
        self.rank, self.gpus, self.process, self.conn = rank, gpus, process, conn

    def __str__(self):
        return f"vLLM data-parallel worker {self.rank} (CUDA_VISIBLE_DEVICES={self.gpus})"


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_path, stop_ids, engine):
        """engine: tpt.backends.EngineConfig's fields (a SamplingConfig has them)."""
        self.stop_ids = list(stop_ids)
        data_parallel_size, tensor_parallel_size = engine.data_parallel_size, engine.tensor_parallel_size
        options = llm_kwargs(model_path, engine)
        self.llm, self.workers = None, []
        if data_parallel_size <= 1:
            from vllm import LLM

            try:
                self.llm = LLM(**options)
            except Exception as e:  # vLLM has logged the details above; the run ends with one line
                raise BackendError(f"vLLM engine (CUDA_VISIBLE_DEVICES={visible_gpus()}) failed to start: "
                                   f"{_describe(e)}") from e
            return
        groups = gpu_groups(data_parallel_size, tensor_parallel_size, visible_gpus())
        # spawn: a forked CUDA context is unusable. Not daemonic: each engine starts processes of its own.
        context = multiprocessing.get_context("spawn")
        for rank, gpus in enumerate(groups):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker, args=(child_end, gpus, options, self.stop_ids),
                                      name=f"tpt-vllm-dp{rank}")
            process.start()
            # Only the worker holds its end now, so its death reads as end-of-file here instead of a hang.
            child_end.close()
            self.workers.append(_Worker(rank, gpus, process, parent_end))
        self._receive(self.workers, "failed to start", START_TIMEOUT_S)

    def _receive(self, workers, failing, timeout):
        """One reply from each worker, whichever answers first; the first failure stops every worker."""
        replies, waiting = {}, {w.conn: w for w in workers}
        while waiting:
            ready = multiprocessing.connection.wait(list(waiting), timeout=timeout)
            if not ready:
                self.close(graceful=False)
                raise BackendError(f"{next(iter(waiting.values()))} {failing}: no answer in {timeout} s")
            for conn in ready:
                worker = waiting.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):  # closed, or reset when it died with our message unread
                    worker.process.join(timeout=10)
                    status, payload = "error", (f"it exited with exit code {worker.process.exitcode} without a "
                                                "word (its log is above)")
                if status == "error":
                    self.close(graceful=False)
                    raise BackendError(f"{worker} {failing}: {payload}")
                replies[worker.rank] = payload
        return [replies[w.rank] for w in workers]

    def generate(self, prompt_token_ids, num_samples, temperature, top_p, max_tokens, seeds, ignore_eos=False):
        sampling = dict(num_samples=num_samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                        ignore_eos=ignore_eos)
        if self.llm is not None:
            return run_requests(self.llm, prompt_token_ids, seeds, sampling, self.stop_ids)
        size = len(self.workers)
        # Dealt round-robin: calls arrive sorted by prompt length, so every engine gets long and short prompts.
        shares = [list(range(r, len(prompt_token_ids), size)) for r in range(size)]
        for worker, share in zip(self.workers, shares):
            try:
                worker.conn.send(([prompt_token_ids[i] for i in share], [seeds[i] for i in share], sampling))
            except OSError:  # a dead worker: _receive reads its end-of-file and names it
                pass
        results = [None] * len(prompt_token_ids)
        for share, answers in zip(shares, self._receive(self.workers, "failed while sampling", None)):
            for i, samples in zip(share, answers):
                results[i] = samples
        return results

    def close(self, graceful=True):
        """Stop the engines: asked to finish, or (after a failure, when others may be busy for minutes) at once."""
        for worker in self.workers:
            try:
                if graceful:
                    worker.conn.send(None)
                elif worker.process.is_alive():
                    worker.process.terminate()  # SIGTERM: vLLM shuts its own engine processes down
            except OSError:  # a worker that is gone already
                pass
        for worker in self.workers:
            worker.process.join(timeout=60 if graceful else 10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers, self.llm = [], None
