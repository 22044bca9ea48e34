"""An engine double for vLLM 0.33 on a machine without a GPU: it replaces the model and the GPU, nothing else.

vLLM's own code still does:
  * LLM's constructor: the arguments bind to the installed LLM.__init__ and build a real EngineArgs;
  * the prompt: TokensPrompt keys, InputProcessor._validate_prompt_len (a prompt at max_model_len is refused);
  * SamplingParams: constructed by the adapter (its validation), cloned and completed as the input processor does
    (update_from_generation_config with the model's generation config and the tokenizer's eos);
  * n > 1: child requests with seeds seed, seed + 1, ... (v1/engine/parallel_sampling.py);
  * stop/length: the scheduler's check_stop on a real vllm.v1.request.Request, finish reasons from its status;
  * RequestOutput / CompletionOutput, built with their real constructors;
  * data parallel: VLLM_DP_* in the environment goes through the real ParallelConfig, which refuses dense models.

In place of the model: a seeded random token stream (seed = the child request's seed; greedy = a function of the
prompt) that ends with the generation config's eos token about one time in eight. In place of the GPUs: the
devices named by CUDA_VISIBLE_DEVICES, each with a memory ledger in $TPT_DOUBLE_DIR (an engine takes
gpu_memory_utilization of every device it uses while it lives and fails at start-up with vLLM's message when
that much is not free), and an engines.jsonl there recording what each engine was given.

Knobs (environment, so they reach gen_synth.py and data-parallel workers): TPT_DOUBLE_DIR switches the double on
(tests/vllm_double_site/sitecustomize.py installs it in every Python process started with that folder on
PYTHONPATH); TPT_DOUBLE_FINISH=abort|error makes the first sample of the last request of each call finish that
way; TPT_DOUBLE_DELAY=seconds makes each generate call take at least that long; TPT_DOUBLE_CRASH_GPU=id makes
an engine given that GPU exit at once with code 7, as a process killed while initialising CUDA does.
"""
import copy
import hashlib
import inspect
import json
import os
import random
import time
import types
import weakref

TOKENS_BEFORE_FAILURE = 2  # TPT_DOUBLE_FINISH: the failed sample has this many tokens, as if cut mid-reply


def ledger_dir():
    return os.environ["TPT_DOUBLE_DIR"]


def occupy(gpu, fraction, owner="external"):
    """Mark `fraction` of fake GPU `gpu` as used by someone else (another job on the node)."""
    with open(os.path.join(ledger_dir(), f"gpu{gpu}.{owner}"), "w") as f:
        f.write(str(fraction))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def used_fraction(gpu):
    """What the live engines (and external users) hold of fake GPU `gpu`."""
    total = 0.0
    for name in os.listdir(ledger_dir()):
        prefix, _, owner = name.partition(".")
        if prefix != f"gpu{gpu}":
            continue
        pid = owner.split("-")[0]
        if owner != "external" and not _pid_alive(int(pid)):
            continue  # an engine whose process died has released its memory
        with open(os.path.join(ledger_dir(), name)) as f:
            total += float(f.read())
    return total


def _release(paths):
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)


def engines_log():
    """What each engine built so far was given (one dict per engine, in start order)."""
    path = os.path.join(ledger_dir(), "engines.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


class DoubleLLM:
    """Stands in for vllm.LLM: same constructor and generate signatures, no model weights, no GPU."""

    def __init__(self, model, **kwargs):
        from transformers import AutoTokenizer
        from vllm import LLM, EngineArgs
        from vllm.config import ParallelConfig
        from vllm.transformers_utils.config import try_get_generation_config

        inspect.signature(LLM.__init__).bind(self, model, **kwargs)
        engine_args = EngineArgs(model=model, **kwargs)
        # The offline data-parallel variables are read by ParallelConfig; SmolLM2, Llama, Gemma are dense.
        ParallelConfig(tensor_parallel_size=engine_args.tensor_parallel_size, is_moe_model=False)

        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if len(visible) < engine_args.tensor_parallel_size:
            raise ValueError(f"tensor_parallel_size {engine_args.tensor_parallel_size} needs as many GPUs, "
                             f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
        devices = visible[: engine_args.tensor_parallel_size]
        if os.environ.get("TPT_DOUBLE_CRASH_GPU") in devices:
            os._exit(7)  # a process killed in CUDA initialisation says nothing
        wanted = engine_args.gpu_memory_utilization
        total_gib = 80.0
        for local, gpu in enumerate(devices):
            free = 1.0 - used_fraction(gpu)
            if free < wanted:  # vllm/v1/worker/utils.py's start-up check, word for word
                raise ValueError(
                    f"Free memory on device cuda:{local} ({free * total_gib:.2f}/{total_gib:.2f} GiB) on startup "
                    f"is less than desired GPU memory utilization ({wanted}, {wanted * total_gib:.2f} GiB). "
                    f"Decrease GPU memory utilization or reduce GPU memory used by other processes.")
        owner = f"{os.getpid()}-{id(self)}"
        held = [os.path.join(ledger_dir(), f"gpu{gpu}.{owner}") for gpu in devices]
        for gpu in devices:
            occupy(gpu, wanted, owner)
        weakref.finalize(self, _release, held)  # freed when the engine goes, as vLLM's engine core exits

        with open(os.path.join(ledger_dir(), "engines.jsonl"), "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "model": model, "kwargs": kwargs,
                                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                "vllm_dp_size": os.environ.get("VLLM_DP_SIZE")}) + "\n")

        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=engine_args.trust_remote_code)
        self.max_model_len = engine_args.max_model_len or self._config_max_len(model)
        self.generation_config_fields = try_get_generation_config(
            model, trust_remote_code=engine_args.trust_remote_code).to_diff_dict()
        self.vocab_size = len(self.tokenizer)

    @staticmethod
    def _config_max_len(model):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).max_position_embeddings

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None, **kwargs):
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.outputs import RequestOutput

        inspect.signature(LLM.generate).bind(self, prompts, sampling_params, use_tqdm, lora_request, **kwargs)
        started = time.time()
        if not isinstance(prompts, (list, tuple)):
            prompts = [prompts]
        if not isinstance(sampling_params, (list, tuple)):
            sampling_params = [sampling_params] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        outputs = []
        for i, (prompt, params) in enumerate(zip(prompts, sampling_params)):
            unknown = set(prompt) - set(TokensPrompt.__annotations__)
            if "prompt_token_ids" not in prompt or unknown:
                raise TypeError(f"not a TokensPrompt: keys {sorted(prompt)}")
            if not isinstance(params, SamplingParams):
                raise TypeError(f"sampling_params must be SamplingParams, got {type(params).__name__}")
            ids = list(prompt["prompt_token_ids"])
            self._validate_prompt_len(len(ids))
            request_params = params.clone()  # what the input processor does to each request
            if request_params.max_tokens is None:
                request_params.max_tokens = self.max_model_len - len(ids)
            request_params.update_from_generation_config(self.generation_config_fields,
                                                         self.tokenizer.eos_token_id)
            fail = os.environ.get("TPT_DOUBLE_FINISH") if i == len(prompts) - 1 else None
            children = [self._run_child(ids, request_params, k, fail if k == 0 else None)
                        for k in range(request_params.n)]
            random.shuffle(children)  # children finish in any order
            outputs.append(RequestOutput(request_id=str(i), prompt=None, prompt_token_ids=ids,
                                         prompt_logprobs=None, outputs=children, finished=True))
        delay = float(os.environ.get("TPT_DOUBLE_DELAY", "0"))
        time.sleep(max(0.0, delay - (time.time() - started)))
        return outputs

    def _validate_prompt_len(self, prompt_len):
        from vllm.v1.engine.input_processor import InputProcessor

        processor = types.SimpleNamespace(
            skip_prompt_length_check=False, supports_mm_inputs=False, mm_encoder_cache_size=0,
            model_config=types.SimpleNamespace(max_model_len=self.max_model_len, runner_type="generate"))
        InputProcessor._validate_prompt_len(processor, prompt_len, "decoder")

    def _run_child(self, prompt_ids, params, index, fail):
        from vllm.outputs import CompletionOutput
        from vllm.v1.core.sched.utils import check_stop
        from vllm.v1.request import Request, RequestStatus

        child = copy.copy(params)  # parallel_sampling.py: a copy with n=1 and seed + index
        child.n = 1
        if child.seed is not None:
            child.seed = params.seed + index
        if child.temperature == 0:  # greedy: the same reply for the same prompt, whatever the seed
            key = "greedy/" + ",".join(map(str, prompt_ids))
        else:
            key = f"seed/{child.seed}" if child.seed is not None else f"random/{random.random()}"
        stream = random.Random(hashlib.sha256(key.encode()).digest())
        end_token = self.generation_config_fields.get("eos_token_id", self.tokenizer.eos_token_id)
        end_token = end_token[0] if isinstance(end_token, list) else end_token
        request = Request(f"{index}_0", prompt_ids, child, None)
        while True:
            token = end_token if stream.random() < 1 / 8 else stream.randrange(3, self.vocab_size)
            request.append_output_token_ids(token)
            if fail and request.num_output_tokens >= TOKENS_BEFORE_FAILURE:
                request.status = {"abort": RequestStatus.FINISHED_ABORTED,
                                  "error": RequestStatus.FINISHED_ERROR}[fail]
                break
            if check_stop(request, self.max_model_len):
                break
        token_ids = list(request.output_token_ids)
        return CompletionOutput(index=index, text=self.tokenizer.decode(token_ids,
                                                                        skip_special_tokens=child.skip_special_tokens),
                                token_ids=token_ids, cumulative_logprob=None, logprobs=None,
                                finish_reason=str(request.get_finished_reason()), stop_reason=request.stop_reason)


def install():
    """Put the double in place of vllm.LLM, and make torch report the fake GPUs as CUDA devices."""
    import torch
    import vllm

    vllm.LLM = DoubleLLM
    torch.cuda.is_available = lambda: True
