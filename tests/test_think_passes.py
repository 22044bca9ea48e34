"""Think beyond the paper: resampling (--skip_solved) and rationalization (--hint), with the real embedded model,
real GSM8K questions and real gemma-2-2b-it traces. A hinted pass is killed mid-run and resumed; its traces are
scored (a trace leaning on the hint is dropped), split with the other passes' and trained on the plain prompt.
Runtime budget: ~1 min on 2 busy cores (three short sampling runs, one SFTTrainer set-up).
"""
import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import GSM8K, PYTHON, ROOT, TPT_REF
from tpt.io import read_json, read_questions
from tpt.prompt import HINT_TEXT, encode_prompt, leans_on_hint

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)

SYNTH = [PYTHON, str(ROOT / "gen_synth.py")]
# 4 real GSM8K test questions, one sample each, 8 new tokens; one question per batch so the journal grows by one.
COMMON = ["--math", str(GSM8K / "test.jsonl"), "--limit", "4", "--num_samples", "1", "--batch_size", "1",
          "--max_tokens", "8", "--backend", "hf"]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def kept_file(path, idts):
    """A kept-trace file (evmath's correct_answers.json form) holding a trace of each of these GSM8K questions."""
    questions = read_questions(str(GSM8K / "test.jsonl"))
    path.write_text(json.dumps([dict(questions[i], origin="sample") for i in idts]))
    return path


@pytest.mark.parametrize("text, leans", [
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n#### 18", False),                  # a plain solution
    ("As the hint says, the answer is 18.\n#### 18", True),               # cites the hint
    ("The hinted answer 18 checks out: 9 * 2 = 18.", True),               # 'hinted'
    ("We are told the answer is 18, so we work backwards.", True),        # told the answer
    ("Using the given answer of 18, each egg is $2.", True),              # 'given answer'
    ("The answer was provided: 18.", True),                               # answer provided
    ("The problem states that the final answer is 18.", True),            # says the prompt gave it
    ("We are given 16 eggs and told she eats 3.\n#### 18", False),        # 'given' about the data, not the answer
    ("The final answer is 18.", False),                                   # stating one's own answer
    ("Let me think about the answer: 9 * 2 = 18.", False),                # 'answer' without being told
    ("Mr. Hinton buys 6 pens at $3: 6 * 3 = 18.\n#### 18", False),        # 'hint' inside a name is no hint
])
def test_leans_on_hint(text, leans):
    assert leans_on_hint(text) is leans


def test_leans_on_hint_never_fires_on_real_unhinted_traces(shared_data):
    # 7,000 real gemma-2-2b-it traces that never saw a hint: every firing would be a false positive.
    traces = read_json(TPT_REF / "math2b_2k.json") + [r for i in range(10)
                                                       for r in read_json(TPT_REF / "gemma2b_test500" / f"e{i}.json")]
    assert len(traces) == 7000
    assert [t["solution"][:80] for t in traces if leans_on_hint(t["solution"])] == []


@pytest.fixture(scope="module")
def hinted_run(tmp_path_factory):
    """A hinted pass over the 3 questions the skip file leaves, killed after its first question, then resumed."""
    tmp = tmp_path_factory.mktemp("passes")
    skip = kept_file(tmp / "solved.json", [0])
    out = tmp / "think_hint"
    # 4 samples on one row: the backend takes 4 x batch_size sequences a call, so each question is its own call.
    args = SYNTH + COMMON + ["--num_samples", "4", "--hint", "--skip_solved", str(skip), "--output_dir", str(out),
                             "--seed", "3"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".journal.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if journal.exists() and len(journal.read_bytes().splitlines()) >= 2:  # header + 1 finished question
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    journaled = [json.loads(line) for line in journal.read_bytes().splitlines()[1:] if line.endswith(b"}")]
    done = run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"tmp": tmp, "out": out, "args": args, "skip": skip, "journaled": journaled, "done": done}


def test_hinted_pass_resumes_and_samples_only_the_unsolved_with_their_answer(hinted_run):
    out, done, journaled = hinted_run["out"], hinted_run["done"], hinted_run["journaled"]
    manifest = json.loads((out / "manifest.json").read_text())
    # Killed mid-pass: the journaled questions were not sampled again.
    assert 1 <= len(journaled) < 3
    assert manifest["resumed_questions"] == len(journaled) and manifest["sampled_questions"] == 3 - len(journaled)
    assert manifest["skipped_questions"] == 1 and manifest["num_questions"] == 3
    records = json.loads((out / "e0.json").read_text())
    assert [r["qnum"] for r in records] == [1, 2, 3]  # question 0 has a kept trace
    assert {r["origin"] for r in records} == {"hint"}
    for rec in journaled:
        assert records[rec["index"]]["num_tokens"] == rec["samples"][0]["num_tokens"]
    # The prompt shown at start-up carries the first sampled question's true answer.
    first = read_questions(str(GSM8K / "test.jsonl"))[1]
    assert HINT_TEXT.format(answer=first["solnum"]) in done.stdout


def test_a_skip_file_that_solves_more_is_another_run(hinted_run):
    # Question 1 now has a kept trace too: the pass would sample other questions, so the folder is refused.
    more = kept_file(hinted_run["tmp"] / "solved_more.json", [0, 1])
    args = [more if a == str(hinted_run["skip"]) else a for a in hinted_run["args"]]
    before = (hinted_run["out"] / "e0.json").read_bytes()
    proc = run([str(a) for a in args])
    assert proc.returncode == 2 and "made with other settings, inputs or code" in proc.stderr and "questions_sha256" in proc.stderr
    assert (hinted_run["out"] / "e0.json").read_bytes() == before


def test_resample_origin_and_nothing_left_to_sample(tmp_path):
    # Three of four questions solved: a resampling pass samples the fourth, its records say `resample`.
    out = tmp_path / "think_resample"
    proc = run(SYNTH + COMMON + ["--max_tokens", "4", "--skip_solved", str(kept_file(tmp_path / "a.json", [0, 1])),
                                 str(kept_file(tmp_path / "b.json", [2])), "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(r["qnum"], r["origin"]) for r in json.loads((out / "e0.json").read_text())] == [(3, "resample")]
    # All four solved: nothing is sampled, no model is loaded, the manifest says so and no e-file is written.
    empty = tmp_path / "empty"
    proc = run(SYNTH + COMMON + ["--skip_solved", str(kept_file(tmp_path / "all.json", range(4))),
                                 "--output_dir", str(empty)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to sample" in proc.stdout
    assert sorted(p.name for p in empty.iterdir()) == ["manifest.json"]
    assert json.loads((empty / "manifest.json").read_text())["skipped_questions"] == 4


def test_kept_hinted_traces_keep_their_origin_and_never_lean_on_the_hint(tmp_path, shared_data):
    # Real gemma traces of 12 test500 questions, as a hinted pass's samples; one correct trace cites the hint.
    questions = read_json(TPT_REF / "test500.json")[:12]
    idts = {q["idt"] for q in questions}
    samples = [dict(r, origin="hint") for r in read_json(TPT_REF / "gemma2b_test500" / "e0.json") if r["qnum"] in idts]
    (tmp_path / "answers.json").write_text(json.dumps(questions))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "e0.json").write_text(json.dumps(samples))
    evmath = [PYTHON, str(ROOT / "evmath.py"), "--answer_path", str(tmp_path / "answers.json"), "--num_samples", "1",
              "--samples_dir"]
    assert run(evmath + [str(tmp_path / "plain")]).returncode == 0
    kept = read_json(tmp_path / "plain" / "correct_answers.json")
    assert kept and {r["origin"] for r in kept} == {"hint"}

    leaning = kept[0]["idt"]
    for r in samples:
        if r["qnum"] == leaning:
            r["solution"] = "As the hint says, the answer is known.\n" + r["solution"]
    (tmp_path / "leaning").mkdir()
    (tmp_path / "leaning" / "e0.json").write_text(json.dumps(samples))
    proc = run(evmath + [str(tmp_path / "leaning")])
    assert proc.returncode == 0 and "dropped as leaning on the hint 1" in proc.stdout
    assert [r["idt"] for r in read_json(tmp_path / "leaning" / "correct_answers.json")] == [r["idt"] for r in kept[1:]]
    assert read_json(tmp_path / "leaning" / "pass_at_k_results.json")["num_hint_leaks"] == 1


def test_passes_split_together_and_hinted_traces_train_on_the_plain_prompt(hinted_run, tmp_path):
    from tests.test_train import _trainer
    from tpt.train_data import end_of_turn_id, prepare_examples, read_train_data

    # The hinted pass's real samples as kept traces, beside a plain pass that kept another trace of question 1.
    hinted = [{"idt": r["qnum"], "question": r["question"], "solution": r["solution"], "origin": r["origin"],
               "solnum": q["solnum"]}
              for r, q in zip(json.loads((hinted_run["out"] / "e0.json").read_text()),
                              read_questions(str(GSM8K / "test.jsonl"))[1:4])]
    (tmp_path / "hint.json").write_text(json.dumps(hinted))
    plain = kept_file(tmp_path / "plain.json", [0, 1])
    proc = run([PYTHON, str(ROOT / "make_json.py"), "--input", str(plain), str(tmp_path / "hint.json"),
                "--train_output", str(tmp_path / "data" / "train.json"), "--eval_output",
                str(tmp_path / "data" / "eval.json"), "--train_size", "3", "--seed", "1"])
    assert proc.returncode == 0, proc.stderr
    train, evals = read_train_data(str(tmp_path / "data" / "train.json"), str(tmp_path / "data" / "eval.json"))
    assert len(train) + len(evals) == 5
    assert not {r["idt"] for r in train} & {r["idt"] for r in evals}  # question 1's two traces stay together
    assert {r["origin"] for r in train + evals} == {"sample", "hint"}

    # Train's tokens of a hinted trace start with the plain prompt, never the hinted one Think sampled from.
    records = [r for r in train + evals if r["origin"] == "hint"]
    trainer = _trainer(tmp_path, records)
    tok = trainer.processing_class
    prepared, _ = prepare_examples(trainer.train_dataset, tok, records, "tpt", end_of_turn_id(tok), None)
    for rec, example in zip(records, prepared):
        plain_ids = encode_prompt(tok, rec["question"], "tpt")
        hinted_ids = encode_prompt(tok, rec["question"], "tpt", hint=rec["solnum"])
        assert plain_ids != hinted_ids
        assert example["input_ids"][:len(plain_ids)] == plain_ids
        assert "Hint:" not in tok.decode(example["input_ids"][:len(hinted_ids)])


def test_report_shows_kept_questions_by_origin_and_pass_at_1_by_difficulty(tmp_path, shared_data):
    from tests.test_report import make_round
    from tpt.io import write_json
    from tpt.report import build_report

    # Two "rounds" of real gemma samples (e0..e1 and e2..e3 per test500 question); round1 has a plain and a
    # hinted Think pass whose kept traces are real ev.json traces.
    ref = [TPT_REF / "gemma2b_test500" / f"e{i}.json" for i in range(4)]
    base, tuned = make_round(tmp_path / "round0" / "eval", ref[:2]), make_round(tmp_path / "round1" / "eval", ref[2:])
    traces = read_json(TPT_REF / "ev.json")
    for name, origin, recs, tokens in (("think", "sample", traces[:6] + traces[:2], 900), ("think_hint", "hint", traces[6:9], 300)):
        write_json(str(tmp_path / "round1" / name / "manifest.json"), {"num_questions": 10, "num_samples": 2,
                                                                      "generated_tokens": tokens})
        write_json(str(tmp_path / "round1" / name / "correct_answers.json"), [dict(r, origin=origin) for r in recs])
    md_path, report = build_report([base, tuned], str(tmp_path / "report"), num_resamples=100)
    md = open(md_path).read()
    row = report["rounds"][1]
    assert row["kept_questions_by_origin"] == {"sample": 6, "hint": 3} and row["kept_questions"] == 9
    assert row["tokens_per_kept_question"] == 1200 / 9
    assert "| round1 | think_hint | 10 × 2 | 300 | 3 | hint 3 |" in md and "**9** distinct | 133 tokens" in md

    # Buckets from round0's scored.json, pass@1 per bucket recomputed from each round's scored.json.
    def rates(eval_dir):
        counts = {}
        for r in read_json(os.path.join(eval_dir, "scored.json")):
            counts.setdefault(r["qnum"], []).append(r["correct"])
        return {q: sum(c) / len(c) for q, c in counts.items()}
    before, after = rates(base), rates(tuned)
    buckets = {"hard": [q for q, p in before.items() if p == 0], "easy": [q for q, p in before.items() if p == 1],
               "medium": [q for q, p in before.items() if 0 < p < 1]}
    assert all(buckets.values())
    for name, qs in buckets.items():
        assert report["difficulty"][1][name] == {"questions": len(qs), "pass@1": pytest.approx(sum(after[q] for q in qs) / len(qs))}
        assert report["difficulty"][0][name]["pass@1"] == {"hard": 0, "easy": 1}.get(name, report["difficulty"][0][name]["pass@1"])
    assert "## Test pass@1 by difficulty" in md and f"hard ({len(buckets['hard'])} questions)" in md
