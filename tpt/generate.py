"""Think and Eval's shared sampling steps: N solutions per question into e0.json ... e{N-1}.json, resumably.

gen_synth.py and gen_eval.py run them in this order: read the questions, check the SamplingConfig, describe
the run (sampling_stage, tpt/stage.py), leave the folder alone when it holds this finished run
(finished_sampling_run), sample_questions, (Eval: score), write_run_manifest. A run folder fills in this order:
  .journal.jsonl   (tpt/journal.py) a header line (the run's fingerprint), then one line per finished question
                   with its N samples, appended a batch at a time. A killed run started again with the same
                   arguments redoes only the batches that are missing; a sample's seed depends only on the run's
                   seed, its question's id and its sample index (tpt.backends.question_seeds).
  e0.json ...      written atomically once every question is in the journal
  manifest.json    written last (it marks the run finished); the journal goes then.
A folder holding a finished run with the same arguments is left untouched and no model is loaded; a folder
holding anything made with other settings is refused with one line saying which (tpt/stage.py).

Think's extra passes (gen_synth.py): `--skip_solved` leaves out the questions that already have a kept trace
(resampling), `--hint` puts each question's true answer in its prompt (rationalization). Every Think record says
which pass made it in `origin`: sample, resample or hint.
"""
import dataclasses
import hashlib
import json
import os
import time

from tpt.backends import BACKENDS
from tpt.device import DTYPES
from tpt.io import DataError, read_questions, sample_paths, write_json
from tpt.journal import JOURNAL, append_journal, resume_journal
from tpt.prompt import (TEMPLATES, check_task, check_template, clean_response, encode_question, stop_strings,
                        task_prompt)
from tpt.stage import MANIFEST, REFUSE, Stage

# A run stopped for lack of GPU memory resumes with a lower --gpu_memory_utilization, or a smaller --batch_size
# (a sample depends on its seed, question and index, never on its batch). Where the replicas run (--ray) does not
# change a sample either.
NOT_FINGERPRINTED = {"gpu_memory_utilization", "ray", "batch_size"}
# Eval's prompt task is fingerprinted by gen_eval.py as its own flags (Think has none, so a Think folder finished
# before they existed keeps matching), each with the value that samples what Eval sampled before it existed.
EVAL_ONLY = {"task": "tpt", "apply_chat_template": False}


def add_generation_args(parser, temperature, max_tokens=1500, max_model_len=1500):
    """The sampling and engine flags gen_synth.py and gen_eval.py share (defaults shown by --help); all but
    --limit are the fields of SamplingConfig. gen_eval.py passes None for defaults that depend on its --task."""
    by_task = " (None: set by --task)"
    parser.add_argument("--max_model_len", type=int, default=max_model_len,
                        help="prompt + reply token limit (0 = the model's own)" + by_task * (max_model_len is None))
    parser.add_argument("--temperature", type=float, default=temperature,
                        help="0 = greedy decoding" + by_task * (temperature is None))
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    parser.add_argument("--max_tokens", type=int, default=max_tokens,
                        help="reply token limit (the original's 1500)" + by_task * (max_tokens is None))
    parser.add_argument("--seed", type=int, default=0, help="base seed; every batch derives its own from it")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: vLLM when installed and CUDA is available, else transformers")
    parser.add_argument("--batch_size", type=int, default=0,
                        help="transformers: rows decoded together (0 = auto: up to 512, the KV cache within a quarter "
                        "of the memory); never changes a sample")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="auto: bfloat16 where the GPU or CPU has bf16 units, else float32 (vLLM: the model's own)")
    parser.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM: GPUs per model copy")
    parser.add_argument("--data_parallel_size", type=int, default=1,
                        help="engine replicas (either backend) on the Ray cluster --ray names")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="sample on a Ray cluster: auto (the one this machine is in), HOST:PORT, or local (start "
                        "one here); needs ray (requirements.txt)")
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


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How Think and Eval sample: the model, the sampling settings and the engine's. Field names are the
    scripts' flag names (see add_generation_args), so error messages and fingerprints name the flags."""
    model_name: str
    num_samples: int
    temperature: float
    top_p: float
    max_tokens: int
    max_model_len: int
    seed: int
    backend: str
    batch_size: int
    dtype: str
    tensor_parallel_size: int
    data_parallel_size: int
    enforce_eager: bool
    attn_implementation: str | None
    gpu_memory_utilization: float
    template: str
    trust_remote_code: bool
    task: str = "tpt"  # Eval's prompt: tpt, or one of the harness's tasks (tpt.prompt.LMEVAL_TASKS)
    apply_chat_template: bool = False  # the harness's tasks only (tpt's prompt is always a chat turn)
    ray: str | None = None

    @classmethod
    def from_flags(cls, flags):
        """The config from a script's parsed flags, as a dict (vars(args)); flags it has no field for are ignored,
        fields it has no flag for (Think's task) keep their defaults."""
        return cls(**{field.name: flags[field.name] for field in dataclasses.fields(cls) if field.name in flags})


def check_config(config):
    """Bad sampling settings as one DataError line, before anything is loaded or written."""
    for name in ("num_samples", "max_tokens", "tensor_parallel_size", "data_parallel_size"):
        if getattr(config, name) < 1:
            raise DataError(f"--{name} must be at least 1, got {getattr(config, name)}")
    if config.batch_size < 0:
        raise DataError(f"--batch_size must be 0 (auto) or positive, got {config.batch_size}")
    if not 0 < config.gpu_memory_utilization <= 1:
        raise DataError(f"--gpu_memory_utilization must be in (0, 1], got {config.gpu_memory_utilization}")
    if config.temperature < 0 or not 0 < config.top_p <= 1:
        raise DataError(f"--temperature must be >= 0 and --top_p in (0, 1], got {config.temperature} and "
                        f"{config.top_p}")
    if config.max_model_len < 0:
        raise DataError(f"--max_model_len must be 0 (the model's own) or positive, got {config.max_model_len}")
    if config.data_parallel_size > 1 and not config.ray:
        raise DataError(f"--data_parallel_size {config.data_parallel_size} runs replicas on a Ray cluster: add "
                        "--ray local (this machine) or --ray auto")
    check_template(config.template)
    check_task(config.task)
    if config.task != "tpt" and config.template != "tpt":
        raise DataError(f"--template {config.template!r}: the prompt of --task {config.task} is the harness's own; "
                        "templates apply to --task tpt")
    if config.task == "tpt" and config.apply_chat_template:
        raise DataError("--apply_chat_template: --task tpt always puts its prompt in the model's chat template")


def select_questions(questions, limit):
    """The first `limit` questions (all when limit is 0)."""
    if limit < 0:
        raise DataError(f"--limit must be 0 (all) or positive, got {limit}")
    selected = questions[:limit] if limit else questions
    if not selected:
        raise DataError("the question file holds no questions")
    return selected


def unsolved_questions(questions, kept_paths):
    """(the questions with no kept trace in these kept-trace files (evmath.py's correct_answers.json), how many
    were left out)."""
    solved = {rec["idt"] for path in kept_paths for rec in read_questions(path, unique_idt=False)}
    unsolved = [q for q in questions if q["idt"] not in solved]
    return unsolved, len(questions) - len(unsolved)


def with_hints(questions):
    """The questions with their true answer as `hint`, which their prompts then show (rationalization)."""
    return [dict(q, hint=q["solnum"]) for q in questions]


def sampling_stage(name, config, questions, samples_dir, flags):
    """Think's or Eval's Stage (tpt.stage): what must match for two runs to share a folder is the sampling config
    (but --gpu_memory_utilization; Eval's --task and --apply_chat_template among it), the script's other flags
    that change what is sampled (`flags`, by flag name: --limit, Think's --hint), and the questions (with their
    hints, and the shots of a harness task's prompt). A folder holding a run made otherwise is refused.

    Where outputs go does not change them, and the question file counts by content, not by path (as do
    Think's --skip_solved files, through the questions they leave).
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in NOT_FINGERPRINTED | EVAL_ONLY.keys()} | flags
    text = json.dumps([[q["idt"], q["question"]] + [q[k] for k in ("hint", "shots") if k in q] for q in questions],
                      ensure_ascii=False)
    settings["questions_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return Stage(name, samples_dir, MANIFEST, settings, on_change=REFUSE, introduced=EVAL_ONLY,
                 ignored=("batch_size",))


def finished_sampling_run(stage, announce=True):
    """The manifest of the stage's finished run (its `skip:` line said when `announce`), None when the folder holds
    no finished run.

    Raises DataError when the folder holds a run (finished or not) made with other settings.
    """
    manifest = stage.finished(announce)
    if manifest is not None:
        return manifest
    journal = os.path.join(stage.folder, JOURNAL)
    if not os.path.isfile(journal) and os.path.isfile(os.path.join(stage.folder, "e0.json")):
        raise DataError(f"{stage.folder}: holds sample files from another run (no journal, no manifest); "
                        "use another --samples_dir")
    return None


def pick_backend(name):
    """'vllm' or 'hf' for --backend `name` (see tpt.backends.select_backend), as a DataError when it cannot run."""
    from tpt.backends import select_backend

    try:
        return select_backend(name)
    except ValueError as e:
        raise DataError(str(e)) from None


def load_tokenizer(model_path, trust_remote_code=False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)


def encode_questions(tokenizer, questions, config, source):
    """Prompt token ids per question (with its hint or shots, when it has them), as config's template and task
    say; a prompt that leaves no room for a reply is a DataError naming it."""
    prompts = [encode_question(tokenizer, q, config.template, config.task, config.apply_chat_template)
               for q in questions]
    for i, ids in enumerate(prompts):
        if config.max_model_len and len(ids) >= config.max_model_len:
            raise DataError(f"{source}: record {i} (idt {questions[i]['idt']!r}): the prompt is {len(ids)} tokens, "
                            f"--max_model_len {config.max_model_len} leaves no room for a reply")
    return prompts


def plan_batches(prompts, per_call, done=()):
    """Question indices per generate call, sorted by prompt length so a batch carries little padding; the
    questions in `done` (a resumed run's journaled ones) are taken out of their batches, and emptied batches go.

    The plan depends only on the prompts and per_call, so a resumed run's batches (vLLM calls, Ray replicas'
    work) hold the questions they held in the killed run, less those already journaled; the transformers backend
    streams them in this order as one continuous batch. A sample's seeds never depend on its batch, only the last
    bits of its products do (docs/think.md#seeds-and-the-last-bits).
    """
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    batches = ([i for i in order[start:start + per_call] if i not in done] for start in range(0, len(order), per_call))
    return [batch for batch in batches if batch]


def load_sampler(backend_name, model_path, tokenizer, config):
    """The backend (tpt.backends) with the model loaded as `config` says."""
    from tpt.backends import load_backend

    # --max_model_len 0: the model's own context length (the harness's tasks' default)
    return load_backend(backend_name, model_path, tokenizer,
                        dataclasses.replace(config, max_model_len=config.max_model_len or None))


def call_sampling(config):
    """The tpt.backends.Sampling of every generate call of a run (the stop strings are its task's)."""
    from tpt.backends import Sampling

    return Sampling(config.num_samples, config.temperature, config.top_p, config.max_tokens,
                    stop=tuple(stop_strings(config.task)))


def local_batches(sampler, config, prompts, seeds, todo):
    """Yield (question indices, per question its samples, seconds) for the (batch index, question indices) of
    `todo`, sampled in this process (tpt.ray_sampling.ReplicaPool.batches: on a cluster). transformers takes the
    whole of `todo` as one continuous batch (HFBackend.stream) and yields the questions of each decode step that
    ended them; vLLM takes one batch a call."""
    if sampler.name == "hf":
        order = [i for _, batch in todo for i in batch]
        t0 = time.time()
        for finished in sampler.stream([prompts[i] for i in order], call_sampling(config), [seeds[i] for i in order]):
            now = time.time()
            yield [order[j] for j, _ in finished], [samples for _, samples in finished], now - t0
            t0 = now
        return
    for _, batch in todo:
        t0 = time.time()
        results = sampler.generate([prompts[i] for i in batch], call_sampling(config), [seeds[i] for i in batch])
        yield batch, results, time.time() - t0


def journal_batches(finished, config, questions, todo, journal_path, journal):
    """Append each batch of `finished` (local_batches or ReplicaPool.batches) to the journal at journal_path (and
    to `journal`, the dict of journaled lines) as it comes; a progress bar counts questions."""
    from tqdm import tqdm

    progress = tqdm(total=len(questions), initial=len(questions) - sum(len(batch) for _, batch in todo), unit="q",
                    desc=f"sampling x{config.num_samples}")
    new_tokens, new_seconds = 0, 0.0
    try:  # the bar ends its line before any error is printed
        for batch, results, seconds in finished:
            if any(i in journal for i in batch):  # each batch is asked for once; a second answer would be a bug
                raise RuntimeError(f"batch of questions {batch} came back twice")
            lines = [{"index": i, "qnum": questions[i]["idt"], "seconds": seconds / len(batch), "samples": samples}
                     for i, samples in zip(batch, results)]
            append_journal(journal_path, lines)
            journal.update({line["index"]: line for line in lines})
            new_tokens += sum(s["num_tokens"] for samples in results for s in samples)
            new_seconds += seconds
            progress.update(len(batch))
            progress.set_postfix(tok_s=f"{new_tokens / max(new_seconds, 1e-9):.1f}")
    finally:
        progress.close()


def sample_totals(journal, num_questions):
    """Tokens, sampling time, speed and truncated replies over a finished journal (resumed batches included)."""
    samples = [s for i in range(num_questions) for s in journal[i]["samples"]]
    tokens = sum(s["num_tokens"] for s in samples)
    seconds = sum(journal[i]["seconds"] for i in range(num_questions))
    return {
        "generated_tokens": tokens,
        "generation_seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else None,
        "truncated": sum(s["finish_reason"] == "length" for s in samples),
    }


def sample_questions(config, questions, source, stage, origin=None):
    """Sample config.num_samples solutions per question into output_dir: the journal, then the e-files.

    Resumes the folder's journal. `source` (the question file) names a question whose prompt is too long;
    `origin` goes into every record. Returns the run's figures for the manifest; scripts call
    finished_sampling_run first and write_run_manifest after.
    """
    from tpt.backends import question_seeds, questions_per_call
    from tpt.models import resolve_model

    start = time.time()
    if config.ray:  # before anything is written: a cluster that cannot be reached is one line
        from tpt.ray_sampling import cluster_backend, connect, replica_resources

        connect(config.ray)
        backend_name = cluster_backend(config.backend)
        resources = replica_resources(backend_name, config)
    else:
        backend_name = pick_backend(config.backend)
    model_path = resolve_model(config.model_name)
    tokenizer = load_tokenizer(model_path, config.trust_remote_code)
    prompt_name = f"template {config.template!r}" if config.task == "tpt" else f"task {config.task!r}"
    print(f"prompt for the first question ({prompt_name}):\n"
          f"{task_prompt(tokenizer, questions[0], config.template, config.task, config.apply_chat_template)}\n",
          flush=True)
    prompts = encode_questions(tokenizer, questions, config, source)

    output_dir = stage.folder
    os.makedirs(output_dir, exist_ok=True)
    journal_path = os.path.join(output_dir, JOURNAL)
    journal = resume_journal(journal_path, stage, backend_name)
    resumed = len(journal)
    # On Ray every replica gets the batches one engine would, so the run's batches do not depend on the replicas.
    per_call = questions_per_call(backend_name, config.num_samples, config.batch_size)
    todo = list(enumerate(plan_batches(prompts, per_call, done=journal)))
    sampled = sum(len(batch) for _, batch in todo)

    load_seconds, replica = 0.0, {}
    if todo:
        seeds = question_seeds(config.seed, [q["idt"] for q in questions])
        t0 = time.time()
        if config.ray:
            from tpt.ray_sampling import ReplicaPool

            sampler = ReplicaPool(backend_name, model_path, config, resources)
            finished = sampler.batches(prompts, seeds, todo)
            replica = {"ray_replica_resources": resources}
        else:
            sampler = load_sampler(backend_name, model_path, tokenizer, config)
            finished = local_batches(sampler, config, prompts, seeds, todo)
        load_seconds = time.time() - t0  # on Ray the replicas load while the first batches wait
        journal_batches(finished, config, questions, todo, journal_path, journal)
        sampler.close()

    write_sample_files(output_dir, questions, journal, config.num_samples, origin, clean=config.task == "tpt")
    return {
        "model_name": config.model_name,
        "model_path": model_path,
        "backend": backend_name,
        "seed": config.seed,
        "num_questions": len(questions),
        "num_samples": config.num_samples,
        **sample_totals(journal, len(questions)),
        "resumed_questions": resumed,
        "sampled_questions": sampled,
        "load_seconds": round(load_seconds, 3),
        **replica,
        "wall_seconds": round(time.time() - start, 3),
    }


def write_sample_files(output_dir, questions, journal, num_samples, origin=None, clean=True):
    """e{j}.json for every sample index j: one record per question, in the question file's order.
    Think's records carry `origin` (which pass made them); Eval's have none. `clean`: the tpt template's
    copied `[Answer]` placeholder taken off (clean_response); a harness task's reply is kept as generated."""
    for j, path in enumerate(sample_paths(output_dir, num_samples)):
        records = []
        for i, q in enumerate(questions):
            sample = journal[i]["samples"][j]
            records.append({
                "qnum": q["idt"],
                "question": q["question"],
                "solution": clean_response(sample["text"]) if clean else sample["text"],
                "finish_reason": sample["finish_reason"],
                "num_tokens": sample["num_tokens"],
            } | ({"origin": origin} if origin else {}))
        write_json(path, records)


def write_run_manifest(stage, flags, stats):
    """manifest.json last (it marks the run finished; `flags`: the script's, as a dict), then the journal is no
    longer needed."""
    path = stage.finish(flags, **stats)
    journal = os.path.join(stage.folder, JOURNAL)
    if os.path.isfile(journal):
        os.unlink(journal)
    return path


def format_stats(stats):
    """The sampling half of a stage's one-line summary."""
    rate = stats.get("tokens_per_second")
    return (f"questions {stats['num_questions']} | samples {stats['num_samples']} | "
            f"tokens {stats['generated_tokens']} | {rate if rate is not None else '-'} tok/s | "
            f"truncated {stats['truncated']} | backend {stats['backend']}")
