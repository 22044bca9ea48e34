"""sft_math.py end to end on the real embedded model and real traces: two optimizer steps (W&B offline), the folder
it saves sampled by gen_synth.py, a resume from a checkpoint, a real two-process launch, and bad input; then a tiny
random Gemma-2 (built from a config, embedded tokenizer) for what is about the loop around the model: attention
picked from the config, fractional eval/save, the best checkpoint, warm-up, bf16 weights, W&B under two ranks.

Runtime budget: ~6 min measured on 2 cores shared with other work at load ~7 (training ran at ~8-16 tokens/s;
the two-step fixture alone ~210 s, the resume ~90-150 s, the two-rank launch ~40-100 s). The traces are the 8
shortest real ones and the prompts use the short "plain" template to keep the steps cheap. The tiny Gemma-2 tests
add ~55 s at load ~5 (~80 s at load ~9): three short runs, the two-rank one stopping before any model loads.
Running again on the two-step fixture's finished folder (skip or refuse) adds ~13 s at load ~2: three runs that
stop before any model loads.
"""
import glob
import json
import os
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, TPT_REF, free_port
from tpt.device import auto_dtype

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)

SCRIPT = str(ROOT / "sft_math.py")
# The smallest real step: short template, short traces, two traces per micro-batch, two micro-batches per step;
# a checkpoint every step, kept after the run for the resume test.
COMMON = ["--template", "plain", "--max_length", "384", "--per_device_train_batch_size", "2",
          "--gradient_accumulation_steps", "2", "--logging_steps", "1", "--save_steps", "1", "--keep_checkpoints"]


def _run(args, env=None, cmd=None, timeout=900):
    full_env = {**os.environ, "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    proc = subprocess.run((cmd or [PYTHON, SCRIPT]) + args, capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """The 8 shortest real gemma-2-2b traces of math2b_2k (train) and the next 2 (for the launch test)."""
    records = json.loads((TPT_REF / "math2b_2k.json").read_text())
    records.sort(key=lambda r: len(r["solution"]))
    folder = tmp_path_factory.mktemp("traces")
    (folder / "train.json").write_text(json.dumps(records[:8]))
    return folder / "train.json"


def _token_count(records):
    """Real tokens of the training sequences, counted independently: Think's prompt + solution + stop token."""
    from transformers import AutoTokenizer

    from tpt.models import resolve_model
    from tpt.prompt import build_prompt

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    return sum(len(tok(build_prompt(tok, r["question"], "plain") + r["solution"] + "<|im_end|>",
                       add_special_tokens=False)["input_ids"]) for r in records)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, traces):
    folder = tmp_path_factory.mktemp("run")
    out = folder / "model"
    args = ["--output_dir", str(out), "--max_steps", "2", "--report_to", "wandb", "--wandb_project", "tpt-test",
            "--run_name", "two-steps"] + COMMON
    proc = _run(["--train_data_path", str(traces)] + args, env={"WANDB_DIR": str(folder)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"folder": folder, "out": out, "proc": proc, "manifest": json.loads((out / "manifest.json").read_text()),
            "args": args}


def test_two_steps_write_a_finished_model_folder(trained, traces):
    out, manifest = trained["out"], trained["manifest"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 2  # <|im_end|>
    assert manifest["global_step"] == 2 and manifest["world_size"] == 1
    # 2 steps x 2 micro-batches x 2 traces: every one of the 8 traces exactly once, no padding counted.
    assert manifest["train_tokens"] == _token_count(json.loads(traces.read_text()))
    assert manifest["data"]["train"]["records"] == 8 and len(manifest["data"]["train"]["sha256"]) == 64
    assert manifest["train_loss"] > 0 and manifest["tokens_per_second"] > 0 and manifest["wall_seconds"] > 0
    assert not (out.parent / ".model.partial").exists()  # the temp folder was renamed, nothing half-written left
    assert "model →" in trained["proc"].stdout


def test_weights_moved(trained):
    # Step 1 is the warm-up step (lr 0); step 2 must change the weights, a little (lr 1e-6).
    from safetensors.torch import load_file

    from tpt.models import resolve_model

    base = load_file(os.path.join(resolve_model("smollm2-135m"), "model.safetensors"))
    new = load_file(str(trained["out"] / "model.safetensors"))
    assert base.keys() == new.keys()
    diff = max((new[k] - base[k]).abs().max().item() for k in base)
    assert 0 < diff < 1e-3


def test_gen_synth_samples_from_the_saved_folder(trained, traces, tmp_path):
    proc = _run(["--model_name", str(trained["out"]), "--math", str(traces), "--num_samples", "1",
                 "--output_dir", str(tmp_path / "think"), "--max_tokens", "8", "--limit", "2", "--backend", "hf"],
                cmd=[PYTHON, str(ROOT / "gen_synth.py")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = json.loads((tmp_path / "think" / "e0.json").read_text())
    assert len(samples) == 2 and all(isinstance(s["solution"], str) and s["solution"] for s in samples)


def _wandb_history(run_dir):
    """The history rows of an offline W&B run, read from its .wandb file.

    wandb 0.31 has no Python reader any more; the file is a LevelDB-style log (32 KiB blocks of records with a
    7-byte header: crc, little-endian length, type) after a 7-byte W&B header, each record a wandb protobuf Record.
    """
    from wandb.proto import wandb_internal_pb2

    data = open(glob.glob(os.path.join(run_dir, "run-*.wandb"))[0], "rb").read()
    assert data[:4] == b":W&B"
    block, pos, pending, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (kind == 0 and length == 0):  # block trailer / zero padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_offline_run_holds_the_logged_loss(trained):
    runs = glob.glob(str(trained["folder"] / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    losses = [row["train/loss"] for row in _wandb_history(runs[0]) if "train/loss" in row]
    assert len(losses) == 2  # logged every step
    # The trainer's train_loss is the mean of the step losses it logged to W&B.
    assert sum(losses) / 2 == pytest.approx(trained["manifest"]["train_loss"], rel=1e-3)


def test_resume_continues_from_a_checkpoint(trained, traces, tmp_path):
    # Continue from step 1's checkpoint as after a kill: step 2 is redone and gives the same loss.
    work = str(trained["out"]) + ".work"
    state = json.loads(open(os.path.join(work, "checkpoint-2", "trainer_state.json")).read())
    step2 = [e["loss"] for e in state["log_history"] if e.get("step") == 2 and "loss" in e]
    out = tmp_path / "resumed"
    proc = _run(["--train_data_path", str(traces), "--output_dir", str(out), "--max_steps", "2", "--report_to", "none",
                 "--resume_from_checkpoint", os.path.join(work, "checkpoint-1")] + COMMON)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == 2 and manifest["resumed_from"].endswith("checkpoint-1")
    state = json.loads(open(str(out) + ".work/checkpoint-2/trainer_state.json").read())
    assert [e["loss"] for e in state["log_history"] if e.get("step") == 2 and "loss" in e] == pytest.approx(step2, rel=1e-4)
    assert manifest["train_tokens"] == trained["manifest"]["train_tokens"]  # the count survives the resume


@pytest.mark.parametrize("flags, edit_data, expected", [
    # the same flags and data (copied to another path), logged elsewhere under another name: skipped, not redone
    (["--report_to", "none", "--run_name", "again"], False, "skip: {out}: Train finished, same settings, inputs and code; nothing to do"),
    # another learning rate: refused, naming it
    (["--learning_rate", "2e-6"], False, "error: {out}: holds a finished run made with other settings, inputs or code "
                                         "(learning_rate: 1e-06 -> 2e-06)"),
    # the same flags on train data whose content changed (one solution edited): refused, naming the train data
    ([], True, "error: {out}: holds a finished run made with other settings, inputs or code (train_data_sha256: "),
], ids=["same", "learning_rate", "train_data"])
def test_finished_folder_is_skipped_or_refused(trained, traces, tmp_path, flags, edit_data, expected):
    # Run again on the two-step fixture's finished folder: before any model loads, one line, and the folder untouched.
    import shutil

    out, manifest = trained["out"], trained["out"] / "manifest.json"
    before = (sorted(os.listdir(out)), manifest.read_text(), manifest.stat().st_mtime_ns)
    data = tmp_path / "train.json"
    shutil.copy(traces, data)
    if edit_data:
        records = json.loads(data.read_text())
        records[0]["solution"] = "Let me check. " + records[0]["solution"]
        data.write_text(json.dumps(records))
    proc = _run(["--train_data_path", str(data)] + trained["args"] + flags, timeout=120)
    expected = expected.format(out=out)
    if expected.startswith("skip: "):
        assert proc.returncode == 0, proc.stderr[-3000:]
        skips = [line for line in proc.stdout.splitlines() if line.startswith("skip: ")]
        assert len(skips) == 1 and skips[0].startswith(expected)
        assert "train:" not in proc.stdout
    else:
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-3000:]
    assert (sorted(os.listdir(out)), manifest.read_text(), manifest.stat().st_mtime_ns) == before
    assert not (out.parent / ".model.partial").exists()


# One step of two gloo ranks (one trace each) from the same flags, however they are launched.
LAUNCH_ARGS = ["--max_steps", "1", "--report_to", "none", "--template", "plain", "--max_length", "384",
               "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1", "--warmup_ratio", "0"]
TORCHRUN = [PYTHON, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def two_ranks(traces, tmp_path_factory):
    """torchrun's two gloo ranks on one node: (the model folder, the launch's stdout)."""
    out = tmp_path_factory.mktemp("ddp") / "model"
    proc = _run(["--train_data_path", str(traces), "--output_dir", str(out)] + LAUNCH_ARGS,
                cmd=TORCHRUN + ["--nproc_per_node", "2", "--master_port", str(free_port()), SCRIPT])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_two_process_launch_runs_one_step(traces, two_ranks):
    # torchrun starts two gloo ranks; the manifest's world size comes from the process group, and the step's
    # tokens are those of both ranks' traces (one each).
    out, stdout = two_ranks
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["global_step"] == 1
    one_trace = _token_count(json.loads(traces.read_text())[:1])
    assert manifest["train_tokens"] > one_trace  # both ranks' traces counted
    assert stdout.count("model →") == 1  # only rank 0 reports and writes


def test_two_nodes_write_one_folder_with_the_one_node_weights(traces, two_ranks, tmp_path):
    # Two "nodes" of one process each on 127.0.0.1, joined by a c10d rendezvous, as TRAIN_LAUNCH runs on each node
    # of a cluster. Both processes are their node's local rank 0; only the global rank 0 may write the folder.
    out = tmp_path / "model"
    launch = TORCHRUN + ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                         "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "tpt-two-nodes", SCRIPT]
    # One thread a process, as torchrun sets for the one-node launch's two (with one process a node, accelerate
    # would take 2 each: 4 threads on 2 shared cores ran 2.5x slower; the weights came out the same either way).
    env = {**os.environ, "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(launch + ["--train_data_path", str(traces), "--output_dir", str(out)] + LAUNCH_ARGS,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(2)]
    outputs = [node.communicate(timeout=900) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-3000:] for _, err in outputs]
    # the folder is written once: one node's process reports it, and the folder holds one run's files
    assert sorted(stdout.count("model →") for stdout, _ in outputs) == [0, 1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["global_step"] == 1
    assert sorted(os.listdir(out)) == sorted(os.listdir(two_ranks[0]))
    assert not (out.parent / ".model.partial").exists()
    # the same weights, tensor by tensor and bit for bit, as the one-node launch: same ranks, same data shards,
    # and a two-rank gloo all-reduce adds the same two gradients whether they cross a node or not
    from safetensors.torch import load_file

    from tpt.models import resolve_model

    ours, one_node = load_file(out / "model.safetensors"), load_file(two_ranks[0] / "model.safetensors")
    assert ours.keys() == one_node.keys()
    assert all(ours[name].dtype == one_node[name].dtype and ours[name].equal(one_node[name]) for name in ours)
    base = load_file(os.path.join(resolve_model("smollm2-135m"), "model.safetensors"))
    assert any(not ours[name].equal(base[name]) for name in ours)  # and the step did move them


REC = {"idt": 1, "question": "What is 2 + 3?", "solution": "2 + 3 = 5\n#### 5", "solnum": "5"}


@pytest.mark.parametrize("train, evals, message", [
    # missing train file
    (None, None, "file not found"),
    # empty train set
    ([], None, "no training records"),
    # a record without a question
    ([{k: v for k, v in REC.items() if k != "question"}], None, "record 0: missing field 'question'"),
    # a record without a solution
    ([{k: v for k, v in REC.items() if k != "solution"}], None, "record 0: missing field 'solution'"),
    # the original project's own eval file shares 72 questions with its train file
    ("math2b_2k.json", "ev.json", "72 of 200 eval questions also appear"),
])
def test_bad_input_fails_with_one_line(tmp_path, train, evals, message):
    def path(obj, name):
        if isinstance(obj, str):
            return str(TPT_REF / obj)
        p = tmp_path / name
        if obj is not None:
            p.write_text(json.dumps(obj))
        return str(p)

    out = tmp_path / "out"
    args = ["--train_data_path", path(train, "train.json"), "--output_dir", str(out), "--report_to", "none"]
    if evals is not None:
        args += ["--eval_data_path", path(evals, "eval.json")]
    proc = _run(args, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists() and not os.path.exists(str(out) + ".work")


def test_wandb_without_login_fails_before_loading(tmp_path):
    proc = _run(["--train_data_path", str(TPT_REF / "ev.json"), "--output_dir", str(tmp_path / "o")],
                env={"WANDB_MODE": "online", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "none"), "HOME": str(tmp_path)},
                timeout=120)
    assert proc.returncode == 2 and "no W&B login found" in proc.stderr


def test_wandb_without_login_ends_both_ranks_with_one_line(traces, tmp_path):
    # Only the main process's login counts; it tells the other rank, and both exit with the same line (a rank
    # failing alone would leave the other waiting in a collective).
    out = tmp_path / "o"
    proc = _run(["--train_data_path", str(traces), "--output_dir", str(out)],
                env={"WANDB_MODE": "online", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "none"), "HOME": str(tmp_path)},
                cmd=[PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534", SCRIPT],
                timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and errors[0] == errors[1] and "no W&B login found on the main process" in errors[0]
    assert not out.exists() and not os.path.exists(str(out) + ".work")


TINY = ["--template", "plain", "--max_length", "384", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--logging_steps", "1", "--report_to", "none"]


@pytest.fixture(scope="module")
def gemma(tmp_path_factory, traces):
    """A tiny random Gemma-2 trained 4 steps (one trace pair each) with eval loss and a checkpoint at half the run
    (fractions), the best checkpoint saved, and warm-up over the whole run; nothing names an attention implementation.

    "Best" is inverted here (--greater_is_better): at lr 1e-6 the eval loss falls at every step, so the lowest would
    be the last checkpoint and the test could not tell the best from the last; the highest is the mid-run one."""
    from tests.test_train import tiny_gemma2

    folder = tmp_path_factory.mktemp("gemma")
    base = tiny_gemma2(folder / "base")
    out = folder / "model"
    records = sorted(json.loads((TPT_REF / "math2b_2k.json").read_text()), key=lambda r: len(r["solution"]))
    (folder / "eval.json").write_text(json.dumps(records[8:10]))  # the next 2 shortest: other questions
    proc = _run(["--model_name_or_path", str(base), "--train_data_path", str(traces), "--output_dir", str(out),
                 "--eval_data_path", str(folder / "eval.json"), "--load_best_model_at_end", "--greater_is_better", "true",
                 "--max_steps", "4",
                 "--eval_steps", "0.5", "--save_steps", "0.5", "--warmup_ratio", "1.0", "--keep_checkpoints"] + TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"base": base, "out": out, "proc": proc, "manifest": json.loads((out / "manifest.json").read_text())}


def test_gemma2_trains_with_eager_attention_chosen_by_itself(gemma):
    assert gemma["manifest"]["attn_implementation"] == "eager" and gemma["manifest"]["global_step"] == 4
    assert "eager attention" in gemma["proc"].stdout
    assert json.loads((gemma["out"] / "config.json").read_text())["attn_logit_softcapping"] == 50.0


def test_fractional_save_steps_checkpoint_mid_run(gemma):
    # --save_steps 0.5 of a 4-step run: a checkpoint at step 2, then at the end (the default, 0.25, would be
    # every step here, and every 8 steps of a 32-step round; a whole-number 100 never fired there).
    work = str(gemma["out"]) + ".work"
    assert sorted(n for n in os.listdir(work) if n.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-4"]


def test_load_best_model_at_end_saves_the_best_checkpoint_by_eval_loss(gemma):
    # As the original kept the best by eval loss: the saved model is the checkpoint whose eval loss is best.
    from safetensors.torch import load_file

    work = str(gemma["out"]) + ".work"
    state = json.loads(open(os.path.join(work, "checkpoint-4", "trainer_state.json")).read())
    evals = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert sorted(evals) == [2, 4] and evals[2] > evals[4]  # evaluated at half and end; the loss fell
    assert gemma["manifest"]["best_checkpoint"].endswith("checkpoint-2")
    saved = load_file(str(gemma["out"] / "model.safetensors"))
    for step, same in ((2, True), (4, False)):
        ckpt = load_file(os.path.join(work, f"checkpoint-{step}", "model.safetensors"))
        assert all((saved[k] == ckpt[k]).all() for k in saved) == same


def test_warmup_ratio_one_warms_up_over_the_whole_run(gemma):
    # The learning rate of each of the 4 steps climbs linearly: every step is a warm-up step, the peak (1e-6) would
    # come at a fifth. (Passed as warmup_steps=1.0, it was one warm-up step: 0, then 1e-6 decaying.)
    state = json.loads(open(os.path.join(str(gemma["out"]) + ".work", "checkpoint-4", "trainer_state.json")).read())
    lrs = [e["learning_rate"] for e in state["log_history"] if "loss" in e]
    assert lrs == pytest.approx([1e-6 * s / 4 for s in (0, 1, 2, 3)], rel=1e-6)
    assert gemma["manifest"]["warmup_steps"] == 4


def test_bfloat16_weights_are_saved_as_bfloat16_and_checkpoints_removed(gemma, traces, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    proc = _run(["--model_name_or_path", str(gemma["base"]), "--train_data_path", str(traces), "--output_dir", str(out),
                 "--max_steps", "1", "--dtype", "bfloat16"] + TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"BF16"}
    assert json.loads((out / "manifest.json").read_text())["weight_dtype"] == "bfloat16"
    # The model folder is complete, so its checkpoints (one, at the end of the run) are gone.
    assert not os.path.exists(str(out) + ".work")


@pytest.mark.parametrize("argv, recipe, expected", [
    # the seed's flags keep working; everything else keeps the paper's defaults
    (["--model_name_or_path", "m", "--eval_data_path", "e.json", "--learning_rate", "2e-6", "--output_dir", "o",
      "--wandb_project", "p", "--run_name", "r", "--num_train_epochs", "2"], None,
     {"model_name_or_path": "m", "eval_traces": "e.json", "learning_rate": 2e-6, "output_dir": "o",
      "wandb_project": "p", "run_name": "r", "num_train_epochs": 2.0, "lr_scheduler_type": "cosine",
      "warmup_ratio": 0.1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "max_length": 1600,
      "dtype": None, "attn_implementation": None, "save_steps": 0.25, "eval_steps": 0.25, "report_to": ["wandb"],
      "gradient_checkpointing": False, "lora_target_modules": "all-linear",
      # bf16 autocast by Think's dtype rule: on where this CPU multiplies bf16 in hardware
      "bf16": auto_dtype("cpu") == "bfloat16"}),
    # a recipe sets flags of all three dataclasses (TPT's, SFTConfig's, ModelConfig's)
    ([], {"template": "plain", "learning_rate": 3e-6, "gradient_checkpointing": True, "dtype": "bfloat16",
          "attn_implementation": "sdpa", "use_peft": True},
     {"template": "plain", "learning_rate": 3e-6, "gradient_checkpointing": True, "dtype": "bfloat16",
      "attn_implementation": "sdpa", "use_peft": True}),
    # the command line wins over the recipe
    (["--learning_rate", "5e-6"], {"learning_rate": 3e-6, "seed": 7}, {"learning_rate": 5e-6, "seed": 7}),
])
def test_flags_and_recipe(tmp_path, argv, recipe, expected):
    import yaml

    import sft_math

    if recipe is not None:
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        argv = ["--config", str(tmp_path / "recipe.yaml")] + argv
    parsed = sft_math.build_parser().parse_args_and_config(["--train_data_path", "t.json"] + argv)
    for name, value in expected.items():
        assert [getattr(d, name) for d in parsed if hasattr(d, name)] == [value], name


def test_help_lists_defaults():
    proc = _run(["--help"], timeout=60)
    assert proc.returncode == 0 and "(default: 1e-06)" in proc.stdout and "--resume_from_checkpoint" in proc.stdout
