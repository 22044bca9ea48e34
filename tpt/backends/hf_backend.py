"""The transformers backend: our own decode loop with continuous batching over a preallocated KV cache.

`batch_size` rows decode together. Each row holds one sequence at its own length in a cache allocated once
(SlotCache): a step writes one key/value per row in place instead of copying the cache; in float32 on the CPU each
row attends only up to its own length (tpt.backends.cpu_attention), elsewhere up to the longest live row. A row that
finishes is refilled at once from the queue of waiting sequences, so the batch never idles on finished rows; once
the queue is empty, finished rows are dropped from the batch. A prompt is prefilled once and its cache copied to the
rows of its samples; the opening every prompt of the run's template shares (the chat template's system turn and the
template's words before the question: tpt.prompt.shared_prompt_ids) is prefilled once per backend and its
keys/values reused, so a prompt costs only the tokens after it. For llama models the waiting prompts are prefilled
up to PREFILL_PROMPTS at a time: their products run together, their attention and logits each alone, so a prompt's
cache is bit for bit the one it gets alone. Each sequence samples with its own generator, seeded with its question's
seed + its sample index, so a sample does not depend on which row or batch it ran in.
Measured against transformers' `generate` (static batches) and `generate_batch` in bench/bench_think.py.
"""
import os
from collections import deque

from transformers import Cache

from tpt.backends import AUTO_ROWS, KV_CACHE_SHARE
from tpt.device import torch_dtype
from tpt.prompt import shared_prompt_ids


SLOT_ATTENTION = "tpt_slot_sdpa"
PREFILL_PROMPTS = 16  # prompts prefilled together at most (their keys/values wait in memory for free rows)
# A float32 product's row came out the same whatever rows ran beside it from 4 rows up (12 as weight @ x^T) and
# otherwise below (MKL, AVX2: bench/bench_decode.py --rows_invariance): prefills and decode steps run their
# products at least this many rows, pads included, so a row never depends on the rows beside it.
MIN_PRODUCT_ROWS = 16
# torch's attention (bfloat16, a GPU) runs over widths in multiples of this many positions: a row's output then came
# out the same at every such width past its own length (its vector lanes and tails; AVX2), so it does not depend on
# how long the longest row beside it is. Float32 on the CPU attends each row to its own length (cpu_attention).
ATTENTION_WIDTH_STEP = 32


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
        self.batch_size = max(0, int(batch_size))  # 0: auto (rows_for)
        # Fixed per backend, never taken from a call's prompts: a prompt's cache then depends on that prompt alone.
        self.prompt_prefix = shared_prompt_ids(tokenizer, engine.template) if engine.template else []
        self._prefix_kv = None
        # Our own decode step where the architecture allows it (LlamaDecode); transformers' forward elsewhere.
        use_own = attn_implementation is None and LlamaDecode.supports(self.model)
        self.decode = LlamaDecode(self.model) if use_own else self.model

    def rows_for(self, length):
        """Rows decoded together for sequences of up to `length` tokens: --batch_size, or with 0 (auto) as many as
        make the decode step's products wide (AUTO_ROWS; a row reads every weight once a step, so rows share that
        read) while the KV cache stays within KV_CACHE_SHARE of the memory (the machine's on a CPU, the GPU's free
        memory)."""
        import torch

        if self.batch_size:
            return self.batch_size
        config = self.model.config.get_text_config()
        per_row = (length * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim(config)
                   * torch.finfo(self.dtype).bits // 8)
        if self.device == "cuda":
            memory = torch.cuda.mem_get_info()[0]
        else:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return max(1, min(AUTO_ROWS, int(memory * KV_CACHE_SHARE) // per_row))

    def _token_budget(self, prompt_len, max_tokens):
        """New tokens a prompt may get: max_tokens, and never past max_model_len (vLLM's rule)."""
        if self.max_model_len:
            return max(0, min(max_tokens, self.max_model_len - prompt_len))
        return max_tokens

    def generate(self, prompt_token_ids, sampling, seeds):
        """Per prompt, sampling.num_samples dicts {text, finish_reason, num_tokens} (tpt.backends.Sampling)."""
        results = [None] * len(prompt_token_ids)
        for finished_prompts in self.stream(prompt_token_ids, sampling, seeds):
            for p, samples in finished_prompts:
                results[p] = samples
        return results

    def stream(self, prompt_token_ids, sampling, seeds):
        """Yield, after each decode step that ended some prompt's last sample, [(prompt index, its
        sampling.num_samples dicts), ...], while the rows go on decoding the prompts after them: handed a whole
        run's prompts, the batch runs narrow only at the end of the run, never between batches of it."""
        import torch

        from tpt.backends import cut_at_stop, stop_window

        num_samples, ignore_eos, stop = sampling.num_samples, sampling.ignore_eos, sampling.stop
        window = stop_window(self.tokenizer, stop)

        budgets = [self._token_budget(len(p), sampling.max_tokens) for p in prompt_token_ids]
        results = {p: [None] * num_samples for p in range(len(prompt_token_ids))}
        pending = {p: num_samples for p in results}  # samples of the prompt not yet ended
        queue = deque((p, s) for p in range(len(prompt_token_ids)) for s in range(num_samples))
        if not queue:
            yield list(results.items())
            return
        length = max(len(p) + b for p, b in zip(prompt_token_ids, budgets))
        width = min(self.rows_for(length), len(queue))
        cache = SlotCache(width, length, self.dtype, self.device)
        sampler = Sampler(sampling.temperature, sampling.top_p, self.stop_ids if ignore_eos else [])
        rows = []  # per live row: {seq, tokens, budget, generator}; row i is cache slot i
        prefilled = {}  # prompt index -> [logits of its last token, samples still to start]
        done = []  # prompts whose samples have all ended since the last yield

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
            pending[p] -= 1
            if not pending[p]:
                done.append(p)
            return True

        while queue or rows:
            # inference mode around the work only, never across a yield (it is the thread's, the caller's too)
            with torch.inference_mode():
                # Refill free rows from the queue; a sequence may finish on its first token.
                while queue and len(rows) < width:
                    p, s = queue.popleft()
                    row = {"seq": (p, s), "tokens": [], "budget": budgets[p],
                           "generator": torch.Generator(self.device).manual_seed(seeds[p] + s)}
                    if finished(row):  # a prompt that leaves no room under max_model_len
                        continue
                    if p not in prefilled:
                        # this prompt and the next ones waiting: their products run together, and their caches
                        # wait (a few MB) for free rows
                        group = self._waiting_prompts(p, queue, prefilled, budgets)
                        kvs = self._prefill([prompt_token_ids[q] for q in group])
                        for q, prefill in zip(group, kvs):
                            prefilled[q] = [prefill, num_samples - s if q == p else num_samples]
                    logits, source = prefilled[p][0]
                    prefilled[p][1] -= 1
                    if prefilled[p][1] == 0:
                        del prefilled[p]
                    row["tokens"].append(int(sampler.sample(logits, [row["generator"]])[0]))
                    if not finished(row):
                        cache.load(len(rows), source)
                        rows.append(row)
                if rows:
                    last = torch.tensor([r["tokens"][-1] for r in rows], device=self.device)
                    next_tokens = sampler.sample(cache.step(self.decode, last), [r["generator"] for r in rows])
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
            if done:
                yield [(p, results.pop(p)) for p in done]
                done.clear()

    def _waiting_prompts(self, first, queue, prefilled, budgets):
        """Prompt `first`, then up to PREFILL_PROMPTS - 1 of the queue's, in its order, not yet prefilled and with
        room for a token."""
        found = [first]
        for q, _ in queue:
            if len(found) == PREFILL_PROMPTS:
                break
            if q not in prefilled and budgets[q] > 0 and q not in found:
                found.append(q)
        return found

    def _prefill(self, prompts):
        """Per prompt (logits of its last position, its keys/values per layer): the keys/values of the part it shares
        with prompt_prefix from the one prefill of that prefix, then the rest. With our own Llama step the prompts'
        rest goes through the products together (PREFILL_PROMPTS at most) and through attention each alone, and
        each prompt's logits come from a product of its own: a product's row does not change with the rows beside
        it once there are MIN_PRODUCT_ROWS of them (the padding), so a prompt's cache depends on it alone, whatever
        it was prefilled with (a Ray replica's calls hold other questions). Elsewhere transformers' forward, one
        prompt at a time."""
        import torch
        from transformers import DynamicCache

        shared = [shared_prefix_length(prompt, self.prompt_prefix) for prompt in prompts]
        if isinstance(self.decode, LlamaDecode):
            prefix = self._prefix_cache() if any(shared) else None
            return self.decode.prefill([(prompt[n:], n) for prompt, n in zip(prompts, shared)], prefix)
        out = []
        for prompt, n in zip(prompts, shared):
            prompt_cache = DynamicCache(config=self.model.config)
            if n:
                # Causal attention: the prefix's keys/values at positions < n are the same whatever follows.
                for layer, (k, v) in enumerate(self._prefix_cache()):
                    prompt_cache.update(k[None, :, :n], v[None, :, :n], layer)
            result = self.model(input_ids=torch.tensor([prompt[n:]], device=self.device),
                                past_key_values=prompt_cache, use_cache=True, logits_to_keep=1)
            out.append((result.logits[:, -1], [(layer.keys[0], layer.values[0]) for layer in prompt_cache.layers]))
        return out

    def _prefix_cache(self):
        """Per layer (keys, values) of prompt_prefix, [kv heads, prefix length, head dim]: one prefill, once."""
        if self._prefix_kv is None:
            self._prefix_kv = self._prefill_alone(self.prompt_prefix)
        return self._prefix_kv

    def _prefill_alone(self, prompt):
        """Per layer (keys, values) of `prompt` prefilled whole, by the same code as every other prompt."""
        import torch
        from transformers import DynamicCache

        if isinstance(self.decode, LlamaDecode):
            return self.decode.prefill([(prompt, 0)], None)[0][1]
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([prompt], device=self.device), past_key_values=cache, use_cache=True,
                   logits_to_keep=1)
        return [(layer.keys[0], layer.values[0]) for layer in cache.layers]

    def close(self):
        self.model = None


class Sampler:
    """Next tokens from logits: greedy at temperature 0, else temperature and nucleus (top_p) sampling, and
    nothing else (no top-k, no penalties: vLLM adds none). Banned tokens (the stop tokens under ignore_eos) are
    never picked. Each row draws with its own generator.

    The work happens in one float32 buffer kept across steps and changed in place (a fresh [rows, vocabulary]
    tensor per operation cost a page-faulted allocation each: at 128 rows the sampler took a quarter of a step)."""

    def __init__(self, temperature, top_p, banned):
        self.temperature, self.top_p, self.banned = temperature, top_p, list(banned)
        self._buffer = None

    def _weights(self, logits):
        """logits as float32 in the buffer (the caller's tensor is left alone: a prompt's logits start each of its
        samples)."""
        import torch

        rows, vocabulary = logits.shape
        if self._buffer is None or self._buffer.shape[0] < rows or self._buffer.shape[1] != vocabulary:
            self._buffer = torch.empty((max(rows, 1), vocabulary), dtype=torch.float32, device=logits.device)
        out = self._buffer[:rows]
        out.copy_(logits)
        if self.banned:
            out[:, self.banned] = float("-inf")
        return out

    def sample(self, logits, generators):
        import torch

        logits = self._weights(logits)
        if self.temperature == 0:
            return logits.argmax(-1)
        logits.div_(self.temperature)
        if self.top_p < 1.0:
            ordered, order = logits.sort(-1, descending=True)
            probs = ordered.softmax(-1)
            # keep the most likely tokens until their mass reaches top_p (the token that crosses it included)
            ordered[(probs.cumsum(-1) - probs) >= self.top_p] = float("-inf")
            logits.fill_(float("-inf")).scatter_(-1, order, ordered)
        # Inverse-CDF sampling: one uniform per row from the row's generator (multinomial per row, which draws
        # over the whole vocabulary, took a sixth of a decode step), against the running sum of exp(logit - max),
        # the softmax before its division.
        cdf = logits.sub_(logits.amax(-1, keepdim=True)).exp_().cumsum_(-1)
        uniform = 1.0 - torch.cat([torch.rand(1, generator=g, device=logits.device) for g in generators])  # (0, 1]
        picks = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None]).view(-1)
        return picks.clamp(max=logits.shape[-1] - 1)


class LlamaDecode:
    """One decode step of a Llama-architecture model (transformers' model_type "llama": RMSNorm, rotary positions,
    grouped-query attention, a SiLU-gated MLP), written against the model's own weights and a SlotCache. The same
    arithmetic as transformers' forward, with less around it: q, k and v come from one product and gate and up from
    another (each pair of weights concatenated once, the model's own Linear layers then viewing into them, so no
    weight is held twice), keys and values are copied into the cache in one indexed copy per layer, the residual
    stream is added in place, and the logits land in a buffer kept across steps. Other architectures (Gemma-2's
    soft-capped attention, sliding windows, ...) and an attention kernel the user names decode through
    transformers' forward."""

    @staticmethod
    def supports(model):
        config = model.config
        return (config.model_type == "llama" and config.hidden_act == "silu"
                and getattr(config, "pretraining_tp", 1) == 1)

    def __init__(self, model):
        import torch

        self.model = model
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = head_dim(config)
        # our own attention kernel for float32 on the CPU (each row to its own length: tpt.backends.cpu_attention)
        self.cpu_attention = model.device.type == "cpu" and model.dtype == torch.float32
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append({
                "norm_in": layer.input_layernorm, "norm_post": layer.post_attention_layernorm,
                "qkv": _fuse([attn.q_proj, attn.k_proj, attn.v_proj]), "o": attn.o_proj,
                "gate_up": _fuse([mlp.gate_proj, mlp.up_proj]), "down": mlp.down_proj, "scaling": attn.scaling,
            })
        self.intermediate = config.intermediate_size
        self.logits = torch.empty(0)

    def __call__(self, cache, tokens, positions, mask):
        """Logits [rows, vocabulary] after feeding row i tokens[i] at positions[i]; the cache's keys/values up to
        cache.width are attended (the mask hides each row's unused tail)."""
        import torch
        import torch.nn.functional as F

        rows, heads, kv_heads, dim = tokens.shape[0], self.heads, self.kv_heads, self.head_dim
        # The products (and torch's attention) run at least min_rows() rows, zero rows padding them, so a row's bits
        # do not depend on how many rows are live: in a run's last steps that is how many other questions' samples
        # are left.
        total = max(rows, min_rows())
        base = self.model.model
        hidden = _pad_rows(base.embed_tokens(tokens), total)
        cos, sin = base.rotary_emb(hidden, _pad_rows(positions, total)[None])
        cos, sin = cos[0, :, None], sin[0, :, None]  # [total, 1, head dim]
        # Row r's key/value of head j goes to flat row (r * kv_heads + j) * length + position of a layer's cache.
        slots = ((torch.arange(rows, device=tokens.device)[:, None] * kv_heads
                  + torch.arange(kv_heads, device=tokens.device)[None, :]) * cache.length + positions[:, None]).view(-1)
        attended = hidden.new_zeros((total, heads * dim))
        if self.cpu_attention:
            from tpt.backends.cpu_attention import decode_attention

            lengths = positions + 1  # each row attends up to its new token
        else:
            mask = _pad_rows(mask, total)  # pad rows see everything (their outputs are dropped)
        for i, layer in enumerate(self.layers):
            x = _rms_norm(layer["norm_in"], hidden)
            qkv = F.linear(x, *layer["qkv"])
            qk = _rotate(qkv[:, : (heads + kv_heads) * dim].view(total, heads + kv_heads, dim), cos, sin)
            v = qkv[:rows, (heads + kv_heads) * dim:].reshape(rows * kv_heads, dim)
            keys, values = cache.keys[i], cache.values[i]
            keys.view(-1, dim).index_copy_(0, slots, qk[:rows, heads:].reshape(rows * kv_heads, dim))
            values.view(-1, dim).index_copy_(0, slots, v)
            if self.cpu_attention:
                decode_attention(qk[:rows, :heads].contiguous(), keys, values, lengths, layer["scaling"],
                                 attended[:rows].view(rows, heads, dim))
            else:
                # grouped-query attention by the kernel itself (enable_gqa): no copy of the cache per query head,
                # and one query a task (15% faster than a key/value head's query heads as its queries)
                out = F.scaled_dot_product_attention(
                    qk[:, :heads, None], _pad_rows(keys[:rows, :, : cache.width], total),
                    _pad_rows(values[:rows, :, : cache.width], total), attn_mask=mask, scale=layer["scaling"],
                    enable_gqa=True)
                attended[:rows] = out[:rows].reshape(rows, heads * dim)
            hidden += layer["o"](attended)
            gate_up = F.linear(_rms_norm(layer["norm_post"], hidden), *layer["gate_up"])
            hidden += layer["down"](F.silu(gate_up[:, : self.intermediate]).mul_(gate_up[:, self.intermediate:]))
        hidden = base.norm(hidden)
        head = self.model.lm_head
        vocabulary = head.weight.shape[0]
        if self.logits.numel() < total * vocabulary or self.logits.dtype != hidden.dtype:
            self.logits = torch.empty(total * vocabulary, dtype=hidden.dtype, device=hidden.device)
        # weight @ hidden^T, the logits transposed (the sampler's copy into its buffer transposes them back): at 256
        # rows MKL's float32 GEMM ran the vocabulary projection 1.6x faster in this order than as hidden @ weight^T
        # on an AMD EPYC, Zen 3, AVX2 only (docs/benchmarks.md)
        logits = torch.mm(head.weight, hidden.t(), out=self.logits[: total * vocabulary].view(vocabulary, total))
        logits = logits[:, :rows].t()
        return logits if head.bias is None else logits.add_(head.bias)

    def prefill(self, prompts, prefix_kv):
        """Per prompt (logits of its last token [1, vocabulary], per layer (keys, values) [kv heads, length, head
        dim]) for prompts [(token ids, n)]: the ids follow the first n tokens of the prompt, whose keys/values are
        prefix_kv's first n. The products run over every prompt's tokens at once (padded to MIN_PRODUCT_ROWS),
        attention and the logits over each prompt alone."""
        import torch
        import torch.nn.functional as F

        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        base = self.model.model
        device = base.embed_tokens.weight.device
        sizes = [len(ids) for ids, _ in prompts]
        total = max(sum(sizes), MIN_PRODUCT_ROWS)
        tokens = torch.tensor([t for ids, _ in prompts for t in ids], device=device)
        positions = torch.tensor([n + i for ids, n in prompts for i in range(len(ids))], device=device)
        hidden = _pad_rows(base.embed_tokens(tokens), total)
        cos, sin = base.rotary_emb(hidden, _pad_rows(positions, total)[None])
        cos, sin = cos[0, :, None], sin[0, :, None]
        caches = [[] for _ in prompts]
        # query j of a prompt sits at position n + j and sees the keys up to there (the same in every layer)
        visible = [torch.arange(n + len(ids), device=device)[None, :] <= torch.arange(n, n + len(ids), device=device)[:, None]
                   for ids, n in prompts]
        for i, layer in enumerate(self.layers):
            qkv = F.linear(_rms_norm(layer["norm_in"], hidden), *layer["qkv"])
            qk = _rotate(qkv[:, : (heads + kv_heads) * dim].view(-1, heads + kv_heads, dim), cos, sin)
            v = qkv[:, (heads + kv_heads) * dim:].view(-1, kv_heads, dim)
            out, start = torch.zeros((hidden.shape[0], heads * dim), dtype=hidden.dtype, device=device), 0
            for p, (ids, n) in enumerate(prompts):
                rows = slice(start, start + len(ids))
                keys, values = qk[rows, heads:].transpose(0, 1), v[rows].transpose(0, 1)
                if n:
                    keys = torch.cat([prefix_kv[i][0][:, :n], keys], dim=1)
                    values = torch.cat([prefix_kv[i][1][:, :n], values], dim=1)
                caches[p].append((keys, values))
                attended = F.scaled_dot_product_attention(
                    qk[rows, :heads].transpose(0, 1)[None], keys[None], values[None], attn_mask=visible[p],
                    scale=layer["scaling"], enable_gqa=True)
                out[rows] = attended[0].transpose(0, 1).reshape(len(ids), heads * dim)
                start += len(ids)
            hidden += layer["o"](out)
            gate_up = F.linear(_rms_norm(layer["norm_post"], hidden), *layer["gate_up"])
            hidden += layer["down"](F.silu(gate_up[:, : self.intermediate]).mul_(gate_up[:, self.intermediate:]))
        last = [sum(sizes[: p + 1]) - 1 for p in range(len(prompts))]
        final = base.norm(hidden[last])
        return [(self.model.lm_head(final[p: p + 1]), caches[p]) for p in range(len(prompts))]


def min_rows():
    """Rows a decode step's products and torch's attention in it run at least, pads included: from
    MIN_PRODUCT_ROWS rows a product's row keeps its bits, and from as many rows as torch has threads an attention
    row does (with fewer, torch's CPU flash kernel splits its work otherwise)."""
    import torch

    return max(MIN_PRODUCT_ROWS, torch.get_num_threads())


def _round_up(n, step):
    """The least multiple of step that is at least n."""
    return -(-n // step) * step


def _pad_rows(x, total):
    """x with zero rows appended up to `total` rows (x itself when it has as many)."""
    import torch

    if x.shape[0] >= total:
        return x
    return torch.cat([x, x.new_zeros((total - x.shape[0], *x.shape[1:]))])


def head_dim(config):
    """A transformers config's attention head size: its head_dim, else hidden size / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _fuse(linears):
    """(weight, bias) of one product that computes these Linear layers side by side; each layer's weight (and bias)
    becomes a view into the concatenation."""
    import torch

    weight = torch.cat([layer.weight.detach() for layer in linears])
    has_bias = [layer.bias is not None for layer in linears]
    bias = torch.cat([layer.bias.detach() for layer in linears]) if all(has_bias) else None
    if any(has_bias) and bias is None:
        raise ValueError("cannot fuse layers of which only some have a bias")
    start = 0
    for layer in linears:
        rows = layer.weight.shape[0]
        layer.weight = torch.nn.Parameter(weight[start:start + rows], requires_grad=False)
        if bias is not None:
            layer.bias = torch.nn.Parameter(bias[start:start + rows], requires_grad=False)
        start += rows
    return weight, bias


def _rms_norm(norm, hidden):
    """transformers' LlamaRMSNorm, step for step (float32 inside)."""
    import torch

    x = hidden.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x.to(hidden.dtype)


def _rotate(x, cos, sin):
    """transformers' apply_rotary_pos_emb for one of q or k, [rows, heads, head dim]."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class SlotCache(Cache):
    """A KV cache allocated once: per layer [rows, kv heads, length, head dim], one sequence per row, each at its
    own length. A decode step writes each row's new key/value at that row's length, in place, and hands attention
    the live rows up to the longest of them; the 4D mask hides each row's unused tail."""

    def __init__(self, rows, length, dtype, device):
        super().__init__(layers=[])
        length = _round_up(length, ATTENTION_WIDTH_STEP)  # room for the widest rounded width
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
        self.width = _round_up(max(self.lengths[:live]) + 1, ATTENTION_WIDTH_STEP)
        columns = torch.arange(self.width, device=self.device)
        mask = torch.zeros((live, 1, 1, self.width), dtype=self.dtype, device=self.device)
        mask.masked_fill_((columns[None, :] > positions[:, None])[:, None, None, :], torch.finfo(self.dtype).min)
        if isinstance(model, LlamaDecode):
            logits = model(self, last_tokens, positions, mask)
        else:
            logits = model(input_ids=last_tokens[:, None], position_ids=positions[:, None], attention_mask=mask,
                           past_key_values=self, use_cache=True).logits[:, -1]
        for i in range(live):
            self.lengths[i] += 1
        return logits

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        import torch

        rows = torch.arange(self.live, device=self.device)
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[rows, :, self.write_at] = key_states[:, :, 0]
        values[rows, :, self.write_at] = value_states[:, :, 0]
        return keys[: self.live, :, : self.width], values[: self.live, :, : self.width]

    def get_seq_length(self, layer_idx=0):
        return self.width
