"""The transformers backend: our own decode loop with continuous batching over a preallocated KV cache.

`batch_size` rows decode together. Each row holds one sequence at its own length in a cache allocated once
(SlotCache): a step writes one key/value per row in place instead of copying the cache, and attends only up to
the longest live row. A row that finishes is refilled at once from the queue of waiting sequences, so the batch
never idles on finished rows; once the queue is empty, finished rows are dropped from the batch. A prompt is
prefilled once and its cache copied to the rows of its samples; the opening every prompt of the run's template
shares (the chat template's system turn and the template's words before the question: tpt.prompt.shared_prompt_ids)
is prefilled once per backend and its keys/values reused, so a prompt costs only the tokens after it. Each
sequence samples with its own generator, seeded with its question's seed + its sample index, so a sample does not
depend on which row or batch it ran in.
Measured against transformers' `generate` (static batches) and `generate_batch` in bench/bench_think.py.
"""
from collections import deque

from transformers import Cache

from tpt.device import torch_dtype
from tpt.prompt import shared_prompt_ids


SLOT_ATTENTION = "tpt_slot_sdpa"


def _slot_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' sdpa, except in a decode step (one query per row, a SlotCache mask): the query heads that share
    a key/value head go in as that head's queries, so keys and values are not repeated per query head (sdpa
    repeats them whenever a mask is given, a copy of the whole cache every step). kwargs: transformers' own
    (dropout, scaling, ...), as its attention interface passes them."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or attention_mask is None or groups == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows, heads, _, dim = query.shape
    out = torch.nn.functional.scaled_dot_product_attention(
        query.view(rows, heads // groups, groups, dim), key, value, attn_mask=attention_mask,
        scale=kwargs.get("scaling"))
    return out.reshape(rows, 1, heads, dim), None


def _register_slot_attention():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SLOT_ATTENTION, _slot_attention)
    AttentionMaskInterface.register(SLOT_ATTENTION, sdpa_mask)


def shared_prefix_length(prompt, prefix):
    """How many of prompt's first tokens are prefix's, short of its last token (always run: its logits are needed)."""
    shared, limit = 0, min(len(prompt) - 1, len(prefix))
    while shared < limit and prompt[shared] == prefix[shared]:
        shared += 1
    return shared


class HFBackend:
    name = "hf"

    def __init__(self, model_path, tokenizer, stop_ids, engine):
        """engine: tpt.backends.EngineConfig's fields (dtype, max_model_len, batch_size, trust_remote_code,
        attn_implementation, template are read)."""
        dtype, max_model_len, batch_size = engine.dtype, engine.max_model_len, engine.batch_size
        trust_remote_code, attn_implementation = engine.trust_remote_code, engine.attn_implementation
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from tpt.models import pick_attn_implementation

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch_dtype(dtype, self.device)
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, config=config, dtype=self.dtype, trust_remote_code=trust_remote_code,
            attn_implementation=pick_attn_implementation(config, attn_implementation),
        ).to(self.device).eval()
        # Our decode attention stands in for the default sdpa only; an implementation the user named is kept.
        if attn_implementation is None and self.model.config._attn_implementation == "sdpa":
            _register_slot_attention()
            self.model.set_attn_implementation(SLOT_ATTENTION)
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids)
        self.max_model_len = max_model_len
        self.batch_size = max(1, int(batch_size))
        # Fixed per backend, never taken from a call's prompts: a prompt's cache then depends on that prompt alone.
        self.prompt_prefix = shared_prompt_ids(tokenizer, engine.template) if engine.template else []
        self._prefix_kv = None

    def _token_budget(self, prompt_len, max_tokens):
        """New tokens a prompt may get: max_tokens, and never past max_model_len (vLLM's rule)."""
        if self.max_model_len:
            return max(0, min(max_tokens, self.max_model_len - prompt_len))
        return max_tokens

    def generate(self, prompt_token_ids, sampling, seeds):
        """Per prompt, sampling.num_samples dicts {text, finish_reason, num_tokens} (tpt.backends.Sampling)."""
        import torch

        from tpt.backends import cut_at_stop, stop_window

        num_samples, ignore_eos, stop = sampling.num_samples, sampling.ignore_eos, sampling.stop
        window = stop_window(self.tokenizer, stop)

        budgets = [self._token_budget(len(p), sampling.max_tokens) for p in prompt_token_ids]
        results = [[None] * num_samples for _ in prompt_token_ids]
        queue = deque((p, s) for p in range(len(prompt_token_ids)) for s in range(num_samples))
        if not queue:
            return results
        length = max(len(p) + b for p, b in zip(prompt_token_ids, budgets))
        cache = SlotCache(self.batch_size, length, self.dtype, self.device)
        sampler = Sampler(sampling.temperature, sampling.top_p, self.stop_ids if ignore_eos else [])
        rows = []  # per live row: {seq, tokens, budget, generator}; row i is cache slot i
        prefilled = {}  # prompt index -> [logits of its last token, samples still to start]

        def finished(row):
            """Record the row's sequence in results when it has ended (end token or budget); True when it has."""
            tokens = row["tokens"]
            if tokens and not ignore_eos and tokens[-1] in self.stop_ids:
                kept, reason = tokens[:-1], "stop"
            elif window and any(term in self.tokenizer.decode(tokens[-window:]) for term in stop):
                kept, reason = tokens, "stop"
            elif len(tokens) >= row["budget"]:
                kept, reason = tokens, "length"
            else:
                return False
            p, s = row["seq"]
            text, cut = cut_at_stop(self.tokenizer.decode(kept, skip_special_tokens=True), stop)
            results[p][s] = {"text": text, "finish_reason": "stop" if cut else reason, "num_tokens": len(tokens)}
            return True

        with torch.inference_mode():
            while queue or rows:
                # Refill free rows from the queue; a sequence may finish on its first token.
                while queue and len(rows) < self.batch_size:
                    p, s = queue.popleft()
                    row = {"seq": (p, s), "tokens": [], "budget": budgets[p],
                           "generator": torch.Generator(self.device).manual_seed(seeds[p] + s)}
                    if finished(row):  # a prompt that leaves no room under max_model_len
                        continue
                    if p not in prefilled:
                        prefilled[p] = [self._prefill(prompt_token_ids[p]), num_samples - s]
                    logits, source = prefilled[p][0]
                    prefilled[p][1] -= 1
                    if prefilled[p][1] == 0:
                        del prefilled[p]
                    row["tokens"].append(int(sampler.sample(logits, [row["generator"]])[0]))
                    if not finished(row):
                        cache.load(len(rows), source)
                        rows.append(row)
                if not rows:
                    continue
                last = torch.tensor([r["tokens"][-1] for r in rows], device=self.device)
                next_tokens = sampler.sample(cache.step(self.model, last), [r["generator"] for r in rows])
                for row, token in zip(rows, next_tokens.tolist()):
                    row["tokens"].append(token)
                # Finished rows leave; the last live row moves into the gap so live rows stay 0..n-1.
                for i in reversed(range(len(rows))):
                    if finished(rows[i]):
                        end = len(rows) - 1
                        if i != end:
                            cache.move(end, i)
                            rows[i] = rows[end]
                        rows.pop()
        return results

    def _prefill(self, prompt):
        """(logits of the prompt's last position, the prompt's keys/values): the keys/values of the part it shares
        with prompt_prefix from the one prefill of that prefix, then one forward pass over the rest."""
        import torch
        from transformers import DynamicCache

        shared = shared_prefix_length(prompt, self.prompt_prefix)
        prompt_cache = DynamicCache(config=self.model.config)
        if shared:
            # Causal attention: the prefix's keys/values at positions < shared are the same whatever follows.
            for layer, (k, v) in enumerate(self._prefix_cache()):
                prompt_cache.update(k[None, :, :shared], v[None, :, :shared], layer)
        out = self.model(input_ids=torch.tensor([prompt[shared:]], device=self.device), past_key_values=prompt_cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], [(layer.keys[0], layer.values[0]) for layer in prompt_cache.layers]

    def _prefix_cache(self):
        """Per layer (keys, values) of prompt_prefix, [kv heads, prefix length, head dim]: one forward pass, once."""
        import torch
        from transformers import DynamicCache

        if self._prefix_kv is None:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([self.prompt_prefix], device=self.device), past_key_values=cache,
                       use_cache=True, logits_to_keep=1)
            self._prefix_kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]
        return self._prefix_kv

    def close(self):
        self.model = None


class Sampler:
    """Next tokens from logits: greedy at temperature 0, else temperature and nucleus (top_p) sampling, and
    nothing else (no top-k, no penalties: vLLM adds none). Banned tokens (the stop tokens under ignore_eos) are
    never picked. Each row draws with its own generator."""

    def __init__(self, temperature, top_p, banned):
        self.temperature, self.top_p, self.banned = temperature, top_p, list(banned)

    def sample(self, logits, generators):
        import torch

        logits = logits.float()
        if self.banned:
            logits[:, self.banned] = float("-inf")
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_p < 1.0:
            ordered, order = logits.sort(-1, descending=True)
            probs = ordered.softmax(-1)
            # keep the most likely tokens until their mass reaches top_p (the token that crosses it included)
            ordered[(probs.cumsum(-1) - probs) >= self.top_p] = float("-inf")
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
        # Inverse-CDF sampling: one uniform per row from the row's generator (multinomial per row, which draws
        # over the whole vocabulary, took a sixth of a decode step).
        cdf = logits.softmax(-1).cumsum(-1)
        uniform = 1.0 - torch.cat([torch.rand(1, generator=g, device=logits.device) for g in generators])  # (0, 1]
        picks = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None]).view(-1)
        return picks.clamp(max=logits.shape[-1] - 1)


class SlotCache(Cache):
    """A KV cache allocated once: per layer [rows, kv heads, length, head dim], one sequence per row, each at its
    own length. A decode step writes each row's new key/value at that row's length, in place, and hands attention
    the live rows up to the longest of them; the 4D mask hides each row's unused tail."""

    def __init__(self, rows, length, dtype, device):
        super().__init__(layers=[])
        self.rows, self.length, self.dtype, self.device = rows, length, dtype, device
        self.keys, self.values = [], []  # allocated on the first load, when the head shapes are known
        self.lengths = [0] * rows  # tokens held per row
        self.live = 0
        self.width = 0
        self.write_at = None

    def load(self, slot, prompt_kv):
        """Put a prefilled prompt's keys/values into row `slot`."""
        import torch

        if not self.keys:
            for k, v in prompt_kv:
                self.keys.append(torch.zeros((self.rows, k.shape[0], self.length, k.shape[-1]), dtype=self.dtype,
                                             device=self.device))
                self.values.append(torch.zeros((self.rows, v.shape[0], self.length, v.shape[-1]),
                                               dtype=self.dtype, device=self.device))
        n = prompt_kv[0][0].shape[1]
        for layer, (k, v) in enumerate(prompt_kv):
            self.keys[layer][slot, :, :n] = k
            self.values[layer][slot, :, :n] = v
        self.lengths[slot] = n
        self.live = max(self.live, slot + 1)

    def move(self, src, dst):
        """Row src's sequence into row dst (a finished row's place)."""
        n = self.lengths[src]
        for keys, values in zip(self.keys, self.values):
            keys[dst, :, :n] = keys[src, :, :n]
            values[dst, :, :n] = values[src, :, :n]
        self.lengths[dst] = n

    def step(self, model, last_tokens):
        """Logits after feeding each live row its last token at its own position."""
        import torch

        live = last_tokens.shape[0]
        self.live = live
        positions = torch.tensor(self.lengths[:live], device=self.device)
        self.write_at = positions
        self.width = max(self.lengths[:live]) + 1
        columns = torch.arange(self.width, device=self.device)
        mask = torch.zeros((live, 1, 1, self.width), dtype=self.dtype, device=self.device)
        mask.masked_fill_((columns[None, :] > positions[:, None])[:, None, None, :], torch.finfo(self.dtype).min)
        out = model(input_ids=last_tokens[:, None], position_ids=positions[:, None], attention_mask=mask,
                    past_key_values=self, use_cache=True)
        for i in range(live):
            self.lengths[i] += 1
        return out.logits[:, -1]

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        import torch

        rows = torch.arange(self.live, device=self.device)
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[rows, :, self.write_at] = key_states[:, :, 0]
        values[rows, :, self.write_at] = value_states[:, :, 0]
        return keys[: self.live, :, : self.width], values[: self.live, :, : self.width]

    def get_seq_length(self, layer_idx=0):
        return self.width
