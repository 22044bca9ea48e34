"""The transformers backend: static batches on CPU or CUDA, left-padded, N samples per question.

Measured on the 2-core CPU (bench/bench_think.py): a plain static batch through `model.generate` beat
transformers' continuous batching (`generate_batch`), so that is what runs here. Prompts arrive sorted by
length from tpt.generate, so a batch carries little padding.
"""
from tpt.backends import derive_seed

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_dtype(dtype, device):
    """'auto': bfloat16 on a CUDA device that supports it (faster there), float32 elsewhere (CPUs here lack bf16)."""
    import torch

    if dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


class HFBackend:
    name = "hf"

    def __init__(self, model_path, tokenizer, stop_ids, dtype="auto", max_model_len=None, batch_size=32,
                 trust_remote_code=False, attn_implementation=None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from tpt.models import pick_attn_implementation

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = pick_dtype(dtype, self.device)
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, config=config, dtype=self.dtype, trust_remote_code=trust_remote_code,
            attn_implementation=pick_attn_implementation(config, attn_implementation),
        ).to(self.device).eval()
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.max_model_len = max_model_len
        self.batch_size = max(1, int(batch_size))

    def generate(self, prompt_token_ids, num_samples, temperature, top_p, max_tokens, seed, ignore_eos=False):
        """Per prompt, num_samples dicts {text, finish_reason, num_tokens}. Forward batches hold batch_size
        sequences (whole questions where num_samples allows), each seeded from (seed, batch index)."""
        # Units of (prompt, sample indices): a question's samples stay together unless N > batch_size.
        units = [(p, list(range(s, min(s + self.batch_size, num_samples))))
                 for p in range(len(prompt_token_ids)) for s in range(0, num_samples, self.batch_size)]
        batches, current = [], []
        for unit in units:
            if current and sum(len(u[1]) for u in current) + len(unit[1]) > self.batch_size:
                batches.append(current)
                current = []
            current.append(unit)
        batches.append(current)
        results = [[None] * num_samples for _ in prompt_token_ids]
        for b, batch in enumerate(batches):
            prompts = [prompt_token_ids[p] for p, _ in batch]
            repeats = [len(samples) for _, samples in batch]
            out = self._generate_batch(prompts, repeats, temperature, top_p, max_tokens, derive_seed(seed, b),
                                       ignore_eos)
            rows = iter(out)
            for p, samples in batch:
                for s in samples:
                    results[p][s] = next(rows)
        return results

    def _token_budget(self, prompt_len, max_tokens):
        """New tokens a prompt may get: max_tokens, and never past max_model_len (vLLM's rule)."""
        if self.max_model_len:
            return max(0, min(max_tokens, self.max_model_len - prompt_len))
        return max_tokens

    def _prefill(self, prompts, repeats):
        """Left-padded ids and mask of the expanded rows, and a KV cache of every prompt but its last token,
        computed once per prompt and then copied to its rows: N samples cost one prefill, not N."""
        import torch
        from transformers import DynamicCache

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt's last token sits in the last column
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention_mask[i, width - len(p):] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        cache = DynamicCache(config=self.model.config)
        if width > 1:
            mask = attention_mask[:, :-1]
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            self.model(input_ids=input_ids[:, :-1], attention_mask=mask, position_ids=position_ids,
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        rows = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(repeats)).to(self.device)
        cache.batch_select_indices(rows)
        return input_ids[rows], attention_mask[rows], cache

    def _generate_batch(self, prompts, repeats, temperature, top_p, max_tokens, seed, ignore_eos):
        import torch

        prompt_lens = [len(p) for p, r in zip(prompts, repeats) for _ in range(r)]
        budgets = [self._token_budget(n, max_tokens) for n in prompt_lens]
        new_tokens = max(budgets)
        sampling = temperature > 0
        options = dict(
            do_sample=sampling,
            max_new_tokens=max(1, new_tokens),
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            # Only what the caller asked for: no top-k or penalties from generation defaults (vLLM adds none).
            top_k=0 if sampling else None,
            temperature=temperature if sampling else None,
            top_p=top_p if sampling else None,
        )
        if ignore_eos:
            options["min_new_tokens"] = new_tokens
        torch.manual_seed(seed)
        with torch.inference_mode():
            input_ids, attention_mask, cache = self._prefill(prompts, repeats)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                                      **options)
        generated = out[:, input_ids.shape[1]:].tolist()
        samples = []
        for tokens, budget in zip(generated, budgets):
            end = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
            if end is not None and end < budget and not ignore_eos:
                kept, finish, count = tokens[:end], "stop", end + 1
            else:
                kept = tokens[:budget]
                finish, count = "length", len(kept)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            samples.append({"text": text, "finish_reason": finish, "num_tokens": count})
        return samples

    def close(self):
        self.model = None
