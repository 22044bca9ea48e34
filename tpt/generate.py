"""Think and Eval's shared sampling driver: N solutions per question into e0.json ... e{N-1}.json, resumably.

A run folder fills in this order:
  .journal.jsonl   append-only: a header line (the run's fingerprint), then one line per finished question
                   with its N samples, appended a batch at a time, flushed and fsync'd. A killed run started
                   again with the same arguments reads it back (a torn last line is cut off) and redoes only the
                   batches that are missing; each batch's seed depends on its place in the run, not on when it ran.
  e0.json ...      written atomically once every question is in the journal
  manifest.json    written last by the script (the completion marker runs/loop.sh checks); the journal goes then.
A folder holding a finished run with the same arguments is left untouched and no model is loaded; a folder
holding anything from different arguments is refused with one line saying which.

Think's extra passes (gen_synth.py): `skip_solved` leaves out the questions that already have a kept trace
(resampling), `hint` puts each question's true answer in its prompt (rationalization). Every Think record says
which pass made it in `origin`: sample, resample or hint.
"""
import hashlib
import json
import os
import time

from tpt.io import DataError, read_questions, sample_paths, write_json
from tpt.manifest import changed_settings, finished_run, write_manifest
from tpt.prompt import TEMPLATES, build_prompt, check_template, clean_response, encode_prompt

JOURNAL = ".journal.jsonl"
MANIFEST = "manifest.json"
# Where outputs go does not change them; the question file is fingerprinted by content instead of by path.
# A run stopped for lack of GPU memory resumes with a lower --gpu_memory_utilization. The kept-trace files of
# --skip_solved count through the questions they leave, which are fingerprinted.
NOT_FINGERPRINTED = {"output_dir", "math", "gpu_memory_utilization", "skip_solved"}


def add_generation_args(parser, temperature):
    """The sampling and engine flags gen_synth.py and gen_eval.py share (defaults shown by --help)."""
    parser.add_argument("--max_model_len", type=int, default=1500, help="prompt + reply token limit")
    parser.add_argument("--temperature", type=float, default=temperature, help="0 = greedy decoding")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    parser.add_argument("--max_tokens", type=int, default=1500, help="reply token limit (the original's 1500)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; every batch derives its own from it")
    parser.add_argument("--backend", choices=("auto", "vllm", "hf"), default="auto",
                        help="auto: vLLM when installed and CUDA is available, else transformers")
    parser.add_argument("--batch_size", type=int, default=32, help="transformers: sequences per forward pass")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="auto: bfloat16 where the GPU or CPU has bf16 units, else float32 (vLLM: the model's own)")
    parser.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM: GPUs per model copy")
    parser.add_argument("--data_parallel_size", type=int, default=1, help="vLLM: model copies on this node")
    parser.add_argument("--enforce_eager", action="store_true", help="vLLM: no CUDA graphs")
    parser.add_argument("--attn_implementation", default=None,
                        help="transformers: attention kernel (default: eager where the model soft-caps attention "
                        "logits, as Gemma-2 does, else sdpa)")
    parser.add_argument("--gpu_memory_utilization", type=float, default=0.92,
                        help="vLLM: share of each GPU's memory its engine takes (vLLM's default)")
    parser.add_argument("--template", default="tpt",
                        help=f"prompt template: one of {sorted(TEMPLATES)} or a string holding {{question}}")
    parser.add_argument("--limit", type=int, default=0, help="only the first LIMIT questions (0 = all)")
    parser.add_argument("--trust_remote_code", action="store_true", help="let transformers/vLLM run model code")


def select_questions(questions, limit):
    """The first `limit` questions (all when limit is 0)."""
    if limit < 0:
        raise DataError(f"--limit must be 0 (all) or positive, got {limit}")
    selected = questions[:limit] if limit else questions
    if not selected:
        raise DataError("the question file holds no questions")
    return selected


def solved_questions(paths):
    """The idts that have a kept trace in any of these kept-trace files (evmath.py's correct_answers.json)."""
    return {rec["idt"] for path in paths for rec in read_questions(path, unique_idt=False)}


def check_args(args):
    """Bad sampling arguments as one DataError line, before anything is loaded or written."""
    for name in ("num_samples", "max_tokens", "batch_size", "tensor_parallel_size", "data_parallel_size"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.gpu_memory_utilization <= 1:
        raise DataError(f"--gpu_memory_utilization must be in (0, 1], got {args.gpu_memory_utilization}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise DataError(f"--temperature must be >= 0 and --top_p in (0, 1], got {args.temperature} and {args.top_p}")
    check_template(args.template)


def run_fingerprint(args, questions, hint=False):
    """What must match for two runs to share a folder: every argument but the output folder, and the questions
    (with their answers when they are hints).

    The arguments are checked first (check_args), so a bad one fails before any folder is looked at.
    """
    check_args(args)
    record = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_FINGERPRINTED}
    text = json.dumps([[q["idt"], q["question"]] + ([q["solnum"]] if hint else []) for q in questions],
                      ensure_ascii=False)
    record["questions_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return record


def finished_sampling_run(output_dir, fingerprint):
    """The manifest of a finished run with this fingerprint, None when the folder holds no finished run.

    Raises DataError when the folder holds a run (finished or not) made with different arguments.
    """
    manifest = finished_run(output_dir, fingerprint)
    if manifest is not None:
        return manifest
    journal = os.path.join(output_dir, JOURNAL)
    if not os.path.isfile(journal) and os.path.isfile(os.path.join(output_dir, "e0.json")):
        raise DataError(f"{output_dir}: holds sample files from another run (no journal, no manifest); "
                        "use another --output_dir")
    return None


def read_journal(path, fingerprint, backend):
    """{question index: journal line} of a journal; cuts a torn last line off so appends start clean."""
    if not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):  # killed in the middle of a write: drop the partial line
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    lines = complete.decode("utf-8").splitlines()
    if not lines:
        return {}
    try:
        header = json.loads(lines[0])
        records = [json.loads(line) for line in lines[1:]]
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: damaged journal ({e.msg}); remove the folder to start over") from None
    if header.get("fingerprint") != fingerprint:
        raise DataError(f"{os.path.dirname(path)}: holds an unfinished run with different arguments "
                        f"({changed_settings(header.get('fingerprint') or {}, fingerprint)}); "
                        "use another --output_dir or the same arguments")
    if header.get("backend") != backend:
        raise DataError(f"{os.path.dirname(path)}: the unfinished run used backend {header.get('backend')!r}, "
                        f"this one would use {backend!r}; pass --backend {header.get('backend')} to resume")
    return {rec["index"]: rec for rec in records}


def _append_lines(path, records):
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def load_tokenizer(model_path, trust_remote_code=False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)


def encode_questions(tokenizer, questions, template, max_model_len, source, hint=False):
    """Prompt token ids per question (with its answer as a hint when `hint`); a prompt that leaves no room for
    a reply is a DataError naming it."""
    prompts = [encode_prompt(tokenizer, q["question"], template, q["solnum"] if hint else None) for q in questions]
    for i, ids in enumerate(prompts):
        if max_model_len and len(ids) >= max_model_len:
            raise DataError(f"{source}: record {i} (idt {questions[i]['idt']!r}): the prompt is {len(ids)} tokens, "
                            f"--max_model_len {max_model_len} leaves no room for a reply")
    return prompts


def sample_questions(args, questions, fingerprint, hint=False, origin=None):
    """Sample args.num_samples solutions per question into args.output_dir (journal, then e-files).

    Returns the run's figures for the manifest. Scripts call finished_sampling_run first and write_run_manifest after.
    """
    from tqdm import tqdm

    from tpt.backends import derive_seed, load_backend, questions_per_call, select_backend
    from tpt.models import resolve_model

    start = time.time()
    n = args.num_samples
    try:
        backend_name = select_backend(args.backend)
    except ValueError as e:
        raise DataError(str(e)) from None
    model_path = resolve_model(args.model_name)
    tokenizer = load_tokenizer(model_path, args.trust_remote_code)
    print(f"prompt for the first question (template {args.template!r}):\n"
          f"{build_prompt(tokenizer, questions[0]['question'], args.template, questions[0]['solnum'] if hint else None)}\n",
          flush=True)
    prompts = encode_questions(tokenizer, questions, args.template, args.max_model_len, args.math, hint)

    os.makedirs(args.output_dir, exist_ok=True)
    journal_path = os.path.join(args.output_dir, JOURNAL)
    journal = read_journal(journal_path, fingerprint, backend_name)
    if not os.path.isfile(journal_path) or os.path.getsize(journal_path) == 0:
        _append_lines(journal_path, [{"fingerprint": fingerprint, "backend": backend_name}])
    resumed = len(journal)

    # Sorted by prompt length so a batch carries little padding; batches are fixed for the run's arguments,
    # so a batch redone after a kill gets the same seed and the same questions as before.
    order = sorted(range(len(questions)), key=lambda i: (len(prompts[i]), i))
    per_call = questions_per_call(backend_name, n, args.batch_size, args.data_parallel_size)
    batches = [order[i:i + per_call] for i in range(0, len(order), per_call)]
    todo = [(b, batch) for b, batch in enumerate(batches) if not all(i in journal for i in batch)]

    backend, load_seconds, new_tokens, new_seconds = None, 0.0, 0, 0.0
    if todo:
        t0 = time.time()
        backend = load_backend(backend_name, model_path, tokenizer, dtype=args.dtype,
                               max_model_len=args.max_model_len, batch_size=args.batch_size,
                               tensor_parallel_size=args.tensor_parallel_size,
                               data_parallel_size=args.data_parallel_size, enforce_eager=args.enforce_eager,
                               gpu_memory_utilization=args.gpu_memory_utilization,
                               trust_remote_code=args.trust_remote_code, seed=args.seed,
                               attn_implementation=args.attn_implementation)
        load_seconds = time.time() - t0
    done = len(questions) - sum(len(batch) for _, batch in todo)
    bar = tqdm(total=len(questions), initial=done, unit="q", desc=f"sampling x{n} ({backend_name})")
    for b, batch in todo:
        t0 = time.time()
        results = backend.generate([prompts[i] for i in batch], n, args.temperature, args.top_p, args.max_tokens,
                                   seed=derive_seed(args.seed, "batch", b))
        seconds = time.time() - t0
        lines = [{"index": i, "qnum": questions[i]["idt"], "seconds": seconds / len(batch), "samples": samples}
                 for i, samples in zip(batch, results)]
        _append_lines(journal_path, lines)
        journal.update({line["index"]: line for line in lines})
        tokens = sum(s["num_tokens"] for samples in results for s in samples)
        new_tokens, new_seconds = new_tokens + tokens, new_seconds + seconds
        bar.update(len(batch))
        bar.set_postfix(tok_s=f"{new_tokens / max(new_seconds, 1e-9):.1f}")
    bar.close()
    if backend is not None:
        backend.close()

    write_sample_files(args.output_dir, questions, journal, n, origin)
    all_samples = [s for i in range(len(questions)) for s in journal[i]["samples"]]
    total_tokens = sum(s["num_tokens"] for s in all_samples)
    total_seconds = sum(journal[i]["seconds"] for i in range(len(questions)))
    return {
        "model_name": args.model_name,
        "model_path": model_path,
        "backend": backend_name,
        "seed": args.seed,
        "num_questions": len(questions),
        "num_samples": n,
        "generated_tokens": total_tokens,
        "generation_seconds": round(total_seconds, 3),
        "tokens_per_second": round(total_tokens / total_seconds, 2) if total_seconds > 0 else None,
        "truncated": sum(s["finish_reason"] == "length" for s in all_samples),
        "resumed_questions": resumed,
        "sampled_questions": len(questions) - done,
        "load_seconds": round(load_seconds, 3),
        "wall_seconds": round(time.time() - start, 3),
    }


def write_sample_files(output_dir, questions, journal, num_samples, origin=None):
    """e{j}.json for every sample index j: one record per question, in the question file's order.
    Think's records carry `origin` (which pass made them); Eval's have none."""
    for j, path in enumerate(sample_paths(output_dir, num_samples)):
        records = []
        for i, q in enumerate(questions):
            sample = journal[i]["samples"][j]
            records.append({
                "qnum": q["idt"],
                "question": q["question"],
                "solution": clean_response(sample["text"]),
                "finish_reason": sample["finish_reason"],
                "num_tokens": sample["num_tokens"],
            } | ({"origin": origin} if origin else {}))
        write_json(path, records)


def write_run_manifest(output_dir, args, fingerprint, stats, **fields):
    """manifest.json last (it marks the run finished), then the journal is no longer needed."""
    path = write_manifest(output_dir, args, fingerprint=fingerprint, **stats, **fields)
    journal = os.path.join(output_dir, JOURNAL)
    if os.path.isfile(journal):
        os.unlink(journal)
    return path


def run_sampling(args, score=None, skip_solved=(), hint=False, origin=None):
    """The whole of Think (and Eval, with `score`): (manifest fields, finished_before).

    A folder holding the same finished run is left as it is and its manifest returned; otherwise the questions
    are sampled (resuming the journal), `score(questions)` runs on the written e-files when given (its result
    goes into the manifest as `scores`), and manifest.json is written last. Raises DataError on bad input.
    skip_solved: kept-trace files whose questions are not sampled; when they leave none, the manifest says so
    and no e-file is written. hint: each prompt carries its question's answer. origin: written in every record.
    """
    questions = select_questions(read_questions(args.math), args.limit)
    solved = solved_questions(skip_solved)
    skipped = sum(q["idt"] in solved for q in questions)
    questions = [q for q in questions if q["idt"] not in solved]
    fingerprint = run_fingerprint(args, questions, hint)
    manifest = finished_sampling_run(args.output_dir, fingerprint)
    if manifest is not None:
        return manifest, True
    if not questions:
        stats = {"num_questions": 0, "num_samples": args.num_samples, "generated_tokens": 0,
                 "tokens_per_second": None, "truncated": 0, "backend": "-", "skipped_questions": skipped}
        write_run_manifest(args.output_dir, args, fingerprint, stats)
        return stats, False
    stats = sample_questions(args, questions, fingerprint, hint, origin)
    stats["skipped_questions"] = skipped
    if score is not None:
        stats["scores"] = score(questions)
    write_run_manifest(args.output_dir, args, fingerprint, stats)
    return stats, False


def format_stats(stats):
    """The sampling half of a stage's one-line summary."""
    rate = stats.get("tokens_per_second")
    return (f"questions {stats['num_questions']} | samples {stats['num_samples']} | "
            f"tokens {stats['generated_tokens']} | {rate if rate is not None else '-'} tok/s | "
            f"truncated {stats['truncated']} | backend {stats['backend']}")
