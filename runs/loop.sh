#!/usr/bin/env bash
# The TPT loop: R rounds of Think -> Prune -> Train, with Eval of the base model and of every round's model,
# then a report. Every stage is its own process (GPU memory is freed between stages), and the loop calls every
# stage every time: each stage decides from its own folder. Think, Eval and Train skip a folder that holds their
# finished run with the same settings, resume one killed mid-way, and refuse (one line naming the setting) one made
# with other settings; Prune (evmath.py, make_json.py) skips when its inputs and settings are the same and redoes
# its work otherwise. So a loop killed at any point picks up where it stopped when started again, and one started
# again with a changed setting never silently keeps the old stage. Folder names come from tpt/layout.py.
#
#   MODEL=google/gemma-2-2b-it ROUNDS=3 OUT=out/gemma2b bash runs/loop.sh
#   MODEL=google/gemma-2-9b-it TRAIN_LAUNCH="accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8" \
#     SFT_ARGS="--gradient_checkpointing true" OUT=out/gemma9b bash runs/loop.sh     # an 8-GPU node
#   GEN_ARGS="--ray auto --data_parallel_size 32" TRAIN_LAUNCH="srun --nodes 4 --ntasks-per-node 1 torchrun \
#     --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint node0:29500 --rdzv_id tpt" ...  # 4 nodes
#     (Think/Eval on a Ray cluster of the 4, Train one torchrun agent a node; docs/gpus.md#several-nodes)
#
# Every knob is a variable below; set it in the environment to override. A stage's setting left unset is not
# passed, so the stage's own default applies (one place: its --help).
set -euo pipefail

# The loop's own settings:
MODEL=${MODEL:-smollm2-135m}                 # base model: embedded alias, hub id or local folder
TRAIN_QUESTIONS=${TRAIN_QUESTIONS:-${TRAIN_DATA:-data/gsm8ktrain.json}}  # (TRAIN_DATA: its older name)
TEST_QUESTIONS=${TEST_QUESTIONS:-${TEST_DATA:-data/gsm8ktest.json}}     # read by Eval only (TEST_DATA: older name)
ROUNDS=${ROUNDS:-1}
INIT_FROM=${INIT_FROM:-last}                  # last: train the previous round's model (the paper); base: STaR / ReST-EM
SEED=${SEED:-}                                # round r's Think samples with seed SEED + r (SEED unset: r); Eval, Prune
                                              # and Train get --seed SEED when it is set
REPORT_TO=${REPORT_TO:-none}                  # the loop runs offline unless told: wandb logs Train and the report to W&B
RESAMPLE_N=${RESAMPLE_N:-0}                   # beyond the paper: Think again, this many samples each, on questions with no kept trace (0 = off)
RATIONALIZE=${RATIONALIZE:-0}                 # beyond the paper: 1 = then Think with the answer as a hint on those still unsolved
OUT=${OUT:-out/loop}
PYTHON=${PYTHON:-python}
SFT_ARGS=${SFT_ARGS:-}                        # extra sft_math.py flags, e.g. "--use_peft --per_device_train_batch_size 4"
TRAIN_LAUNCH=${TRAIN_LAUNCH:-}                # Train's launcher, one process per GPU: "torchrun --nproc_per_node 2",
                                              # "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8";
                                              # several nodes: a command that starts one torchrun --nnodes agent on each (srun)
GEN_ARGS=${GEN_ARGS:-}                        # extra gen_synth.py / gen_eval.py flags

# The stages' settings: passed only when set, so each stage's default (its --help) is the one that applies.
N=${N:-}                                      # Think: samples per training question (gen_synth.py --num_samples)
EVAL_N=${EVAL_N:-}                            # Eval: samples per test question (gen_eval.py --num_samples)
TRAIN_SIZE=${TRAIN_SIZE:-}                    # kept traces a round trains on (make_json.py --train_size)
MAX_PER_QUESTION=${MAX_PER_QUESTION:-}        # kept traces per question (evmath.py --max_per_question)
LR=${LR:-}                                    # sft_math.py --learning_rate
EPOCHS=${EPOCHS:-}                            # sft_math.py --num_train_epochs
TEMPERATURE=${TEMPERATURE:-}                  # Think (gen_synth.py --temperature)
EVAL_TEMPERATURE=${EVAL_TEMPERATURE:-}        # Eval (gen_eval.py --temperature)
TEMPLATE=${TEMPLATE:-}                        # prompt wording; Think, Train and Eval share it (--template)
MAX_TOKENS=${MAX_TOKENS:-}                    # Think and Eval (--max_tokens)
MAX_MODEL_LEN=${MAX_MODEL_LEN:-}              # Think and Eval (--max_model_len)
BACKEND=${BACKEND:-}                          # Think and Eval (--backend; auto: vLLM on a CUDA GPU when installed)
BATCH_SIZE=${BATCH_SIZE:-}                    # Think and Eval, transformers backend (--batch_size)
LIMIT=${LIMIT:-}                              # Think on the first LIMIT training questions (gen_synth.py --limit)
EVAL_LIMIT=${EVAL_LIMIT:-}                    # Eval on the first EVAL_LIMIT test questions (gen_eval.py --limit)

cd "$(dirname "$0")/.."
stage() { echo; echo "=== $*"; }
# set_flags --flag "$VALUE" ...: flags=(the --flag VALUE pairs whose value is set)
set_flags() { flags=(); while [ $# -gt 0 ]; do if [ -n "$2" ]; then flags+=("$1" "$2"); fi; shift 2; done; }
gen_flags() {  # gen_flags: the sampling settings Think and Eval share, those set
  set_flags --max_tokens "$MAX_TOKENS" --max_model_len "$MAX_MODEL_LEN" --backend "$BACKEND" \
    --batch_size "$BATCH_SIZE" --template "$TEMPLATE"
}

# One Train process cannot use several GPUs (TRL refuses DataParallel): stop before anything loads, not at round 1.
if [ -z "$TRAIN_LAUNCH" ]; then
  gpus=$($PYTHON -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -gt 1 ]; then
    echo "error: $gpus GPUs visible and TRAIN_LAUNCH is empty: set TRAIN_LAUNCH=\"accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes $gpus\" (or ddp.yaml, deepspeed_zero3.yaml), or CUDA_VISIBLE_DEVICES to one GPU" >&2
    exit 2
  fi
fi

# Rounds never read the test set except in Eval: refuse to start when train and test share a question.
$PYTHON make_data.py check --train_questions "$TRAIN_QUESTIONS" --test_questions "$TEST_QUESTIONS"

eval_model() {  # eval_model MODEL_PATH SAMPLES_DIR
  gen_flags; local shared=("${flags[@]}")
  set_flags --num_samples "$EVAL_N" --temperature "$EVAL_TEMPERATURE" --limit "$EVAL_LIMIT" --seed "$SEED"
  $PYTHON gen_eval.py --model_name "$1" --questions "$TEST_QUESTIONS" --samples_dir "$2" "${shared[@]}" "${flags[@]}" \
    $GEN_ARGS
}

# think_dir, think_resample_dir, think_hint_dir, data_dir, train_traces, eval_traces, model_dir, eval_dir,
# report_dir of round $1, and kept_file (Prune's kept traces in a Think folder): python -m tpt.layout prints them.
round_layout() { local layout; layout=$($PYTHON -m tpt.layout --out "$OUT" --round "$1"); eval "$layout"; }

round_layout 0
stage "round 0: Eval of the base model $MODEL"
eval_model "$MODEL" "$eval_dir"
evals=("$eval_dir")

think_pass() {  # think_pass MODEL_PATH SAMPLES_DIR NUM_SAMPLES SEED [gen_synth flags]: sample, then score and keep
  local model=$1 dir=$2 n=$3 seed=$4; shift 4
  gen_flags; local shared=("${flags[@]}")
  set_flags --num_samples "$n" --temperature "$TEMPERATURE" --limit "$LIMIT"
  $PYTHON gen_synth.py --model_name "$model" --questions "$TRAIN_QUESTIONS" --samples_dir "$dir" --seed "$seed" \
    "${shared[@]}" "${flags[@]}" "$@" $GEN_ARGS
  set_flags --max_per_question "$MAX_PER_QUESTION"
  $PYTHON evmath.py --samples_dir "$dir" --questions "$TRAIN_QUESTIONS" "${flags[@]}"  # N: from the folder
  if [ -f "$dir/$kept_file" ]; then kept+=("$dir/$kept_file"); fi
}

current=$MODEL
for r in $(seq 1 "$ROUNDS"); do
  round_layout "$r"
  kept=()
  stage "round $r: Think with $current, then Prune"
  think_pass "$current" "$think_dir" "$N" "$((${SEED:-0} + r))"
  if [ "$RESAMPLE_N" -gt 0 ]; then
    stage "round $r: Think again ($RESAMPLE_N samples) on the questions with no kept trace"
    think_pass "$current" "$think_resample_dir" "$RESAMPLE_N" "$((${SEED:-0} + r + 1000))" --skip_solved "${kept[@]}"
  fi
  if [ "$RATIONALIZE" = 1 ]; then
    stage "round $r: Think with the answer as a hint on the questions still unsolved"
    think_pass "$current" "$think_hint_dir" "$N" "$((${SEED:-0} + r + 2000))" --hint --skip_solved "${kept[@]}"
  fi

  stage "round $r: Prune (split the kept traces of every pass)"
  set_flags --train_size "$TRAIN_SIZE" --seed "$SEED"
  $PYTHON make_json.py --kept "${kept[@]}" --train_traces "$train_traces" --eval_traces "$eval_traces" \
    --exclude "$TEST_QUESTIONS" "${flags[@]}"

  stage "round $r: Train"
  if [ "$INIT_FROM" = base ]; then init=$MODEL; else init=$current; fi
  set_flags --learning_rate "$LR" --num_train_epochs "$EPOCHS" --seed "$SEED" --template "$TEMPLATE"
  ${TRAIN_LAUNCH:-$PYTHON} sft_math.py --model_name_or_path "$init" --train_traces "$train_traces" \
    --eval_traces "$eval_traces" --output_dir "$model_dir" --report_to "$REPORT_TO" \
    --run_name "$(basename "$OUT")-round$r" "${flags[@]}" $SFT_ARGS
  current=$model_dir

  stage "round $r: Eval of $current"
  eval_model "$current" "$eval_dir"
  evals+=("$eval_dir")
done

stage "report"
report_flags=()
[ "$REPORT_TO" = wandb ] && report_flags+=(--wandb)
$PYTHON report.py --rounds "${evals[@]}" --out "$report_dir" "${report_flags[@]}"
