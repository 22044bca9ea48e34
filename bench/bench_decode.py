"""Where a transformers decode step spends its time on this CPU, and what the demo's Eval gains from wider rows.

    python bench/bench_decode.py --products --rows 256,512      # float32 GFLOP/s of the decode step's products
    python bench/bench_decode.py --attention --rows 256         # one layer's decode attention, every formulation
    python bench/bench_decode.py --step --rows 128,256,512      # a steady-state decode step (add --profile)
    python bench/bench_decode.py --eval --rows 256,512          # the demo's whole Eval (130 questions x 8)
    python bench/bench_decode.py --rows_invariance              # from how many rows a product's row keeps its bits

Figures and the CPU they came from: docs/benchmarks.md ("On an AVX2-only CPU"). Each part prints medians; the
demo's Eval runs the widths one after another in this process, the first width first.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT_TOKENS, MAX_TOKENS, SAMPLES = 74, 128, 8  # the demo's plain-template prompts, token budget, Eval samples


def median_ms(fn, repeats=20):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def products(rows):
    """GFLOP/s of SmolLM2-135M's decode products at `rows` rows, as F.linear runs them and as weight @ x^T."""
    import torch
    import torch.nn.functional as F

    shapes = {"q/k/v 576->960": (960, 576), "gate/up 576->3072": (3072, 576), "down 1536->576": (576, 1536),
              "o 576->576": (576, 576), "vocabulary 576->49152": (49152, 576)}
    for name, (out_features, in_features) in shapes.items():
        weight, x = torch.randn(out_features, in_features), torch.randn(rows, in_features)
        flop = 2 * rows * out_features * in_features
        linear = flop / median_ms(lambda: F.linear(x, weight)) / 1e6
        transposed = flop / median_ms(lambda: torch.mm(weight, x.t())) / 1e6
        print(f"{rows} rows {name}: x @ W^T {linear:.0f} GFLOP/s, W @ x^T {transposed:.0f}")


def attention(rows, kv_heads=3, groups=3, dim=64):
    """ms of one layer's decode attention (SmolLM2-135M's heads; the demo's prompts; rows spread evenly over
    0..MAX_TOKENS-1 generated tokens), and of only reading its keys and values."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    generated = torch.tensor([(r * (MAX_TOKENS - 1)) // rows for r in range(rows)])[torch.randperm(rows)]
    lengths = PROMPT_TOKENS + generated
    width = int(lengths.max()) + 1
    keys = torch.randn(rows, kv_heads, width, dim)
    values = torch.randn(rows, kv_heads, width, dim)
    query = torch.randn(rows, kv_heads * groups, 1, dim)
    grouped = query.view(rows, kv_heads, groups, dim)
    hidden = (torch.arange(width)[None] > lengths[:, None])[:, None, None]
    mask = torch.zeros(rows, 1, 1, width).masked_fill_(hidden, torch.finfo(torch.float32).min)
    scale = dim ** -0.5

    def einsum():
        scores = torch.einsum("rkgd,rkwd->rkgw", grouped, keys).mul_(scale).add_(mask)
        return torch.einsum("rkgw,rkwd->rkgd", scores.softmax(-1), values)

    def keys_times_query():
        scores = torch.matmul(keys, grouped.transpose(-1, -2)).transpose(-1, -2).mul_(scale).add_(mask)
        return torch.matmul(scores.softmax(-1), values)

    def math_backend():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=scale)

    from tpt.backends.cpu_attention import decode_attention

    flat_query, out = query[:, :, 0].contiguous(), torch.empty(rows, kv_heads * groups, dim)
    decode_attention(flat_query, keys, values, lengths + 1, scale, out)  # numba compiles (or loads) it here
    variants = {
        "read keys and values only": lambda: (keys.sum(), values.sum()),
        "tpt.backends.cpu_attention, each row to its own length (the float32 CPU decode step's)":
            lambda: decode_attention(flat_query, keys, values, lengths + 1, scale, out),
        "sdpa, enable_gqa (the decode step's in bfloat16)": lambda: F.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, scale=scale, enable_gqa=True),
        "sdpa, query heads as their kv head's queries": lambda: F.scaled_dot_product_attention(
            grouped, keys, values, attn_mask=mask, scale=scale),
        "sdpa, boolean mask": lambda: F.scaled_dot_product_attention(
            grouped, keys, values, attn_mask=~hidden, scale=scale),
        "sdpa, no mask (wrong, for its cost)": lambda: F.scaled_dot_product_attention(
            grouped, keys, values, scale=scale),
        "einsum": einsum,
        "K @ q matmuls": keys_times_query,
        "sdpa, math backend": math_backend,
    }
    megabytes = 2 * keys.numel() * 4 / 1e6
    print(f"{rows} rows, width {width}: {megabytes:.0f} MB of keys and values a layer")
    for name, fn in variants.items():
        print(f"  {name}: {median_ms(fn):.2f} ms")


def demo_backend(batch_size):
    from tpt.backends import EngineConfig
    from tpt.backends.hf_backend import HFBackend
    from tpt.generate import load_tokenizer
    from tpt.models import load_generation_config, resolve_model, stop_token_ids

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    stop_ids = stop_token_ids(tokenizer, load_generation_config(path))
    return HFBackend(path, tokenizer, stop_ids, EngineConfig(dtype="float32", max_model_len=1024,
                                                           batch_size=batch_size, template="plain"))


def step(rows, profile):
    """A decode step in steady state: `rows` rows of one demo prompt at lengths spread evenly over the token budget
    (kept there step after step), sampling at 0.7."""
    import torch

    from tpt.backends.hf_backend import Sampler, SlotCache
    from tpt.prompt import encode_prompt

    backend = demo_backend(rows)
    prompt = encode_prompt(backend.tokenizer, "Tom has 3 apples and buys 4 more. How many apples does he have?", "plain")
    spread = [len(prompt) + (r * (MAX_TOKENS - 1)) // rows for r in range(rows)]
    with torch.inference_mode():
        _, prompt_kv = backend._prefill([prompt])[0]
        cache = SlotCache(rows, len(prompt) + MAX_TOKENS + 1, backend.dtype, backend.device)
        for r in range(rows):
            cache.load(r, prompt_kv)
        sampler = Sampler(0.7, 1.0, [])
        generators = [torch.Generator().manual_seed(r) for r in range(rows)]
        last = torch.full((rows,), int(prompt[-1]))

        def one_step():
            cache.lengths[:rows] = spread
            sampler.sample(cache.step(backend.decode, last), generators)

        ms = median_ms(one_step, repeats=40)
        print(f"{rows} rows: {ms:.0f} ms a step, {rows / ms * 1e3:.0f} tokens/s")
        if profile:
            with torch.profiler.profile() as prof:
                for _ in range(10):
                    one_step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def demo_eval(rows):
    """The demo's whole Eval (its 130 test questions x 8 at 0.7, up to 128 tokens) as gen_eval.py runs it."""
    from tpt.backends import Sampling, question_seeds
    from tpt.data import DEMO_TASK, DEMO_TASK_CONFIG, make_gym_split
    from tpt.prompt import encode_prompt

    backend = demo_backend(rows)
    test = make_gym_split(DEMO_TASK, 400, 200, 1, 1_000_000, DEMO_TASK_CONFIG)[1]
    prompts = [encode_prompt(backend.tokenizer, q["question"], "plain") for q in test]
    backend.generate(prompts[:1], Sampling(1, 0.7, 1.0, 4), [0])  # warm-up
    start = time.time()
    results = backend.generate(prompts, Sampling(SAMPLES, 0.7, 1.0, MAX_TOKENS),
                               question_seeds(0, [q["idt"] for q in test]))
    seconds = time.time() - start
    generated = sum(s["num_tokens"] for r in results for s in r)
    model_tokens = generated + sum(len(p) for p in prompts)
    print(f"{rows} rows: {len(prompts)} questions x {SAMPLES} in {seconds:.0f} s, {generated / seconds:.0f} "
          f"generated tokens/s, {model_tokens / seconds:.0f} model tokens/s")


def rows_invariance(largest=600):
    """For each of the model's product shapes (as F.linear and as weight @ x^T run it, float32): the row counts m
    at which row 0 comes out otherwise than at `largest` rows. Decode steps and batched prefills rely on none at 16
    rows and up (tpt/backends/hf_backend.py MIN_PRODUCT_ROWS)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    counts = list(range(1, 33)) + [35, 64, 100, 140, 256, 280, 350, 512, largest]
    for name, (out_features, in_features) in {"q/k/v 576->1152": (1152, 576), "gate/up 576->3072": (3072, 576),
                                              "down 1536->576": (576, 1536), "o 576->576": (576, 576),
                                              "vocabulary 576->49152": (49152, 576)}.items():
        weight, x = torch.randn(out_features, in_features), torch.randn(largest, in_features)
        for order, product in (("x @ W^T", lambda m: F.linear(x[:m], weight)[:1]),
                               ("W @ x^T", lambda m: torch.mm(weight, x[:m].t()).t()[:1])):
            reference = product(largest)
            differ = [m for m in counts if not torch.equal(product(m), reference)]
            print(f"{name} {order}: row 0 differs from {largest} rows at {differ or 'no'} rows")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="256", help="comma-separated row counts")
    parser.add_argument("--products", action="store_true")
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--step", action="store_true")
    parser.add_argument("--profile", action="store_true", help="--step: also torch.profiler over 10 steps")
    parser.add_argument("--eval", action="store_true")
    parser.add_argument("--rows_invariance", action="store_true")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    if args.rows_invariance:
        rows_invariance()
    for rows in [int(r) for r in args.rows.split(",")]:
        if args.products:
            products(rows)
        if args.attention:
            attention(rows)
        if args.step:
            step(rows, args.profile)
        if args.eval:
            demo_eval(rows)


if __name__ == "__main__":
    main()
