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
# Every knob is a variable below; set it in the environment to override.
set -euo pipefail

MODEL=${MODEL:-smollm2-135m}                 # base model: embedded alias, hub id or local folder
TRAIN_DATA=${TRAIN_DATA:-data/gsm8ktrain.json}
TEST_DATA=${TEST_DATA:-data/gsm8ktest.json}   # read by Eval only
ROUNDS=${ROUNDS:-1}
N=${N:-5}                                     # Think: samples per training question
EVAL_N=${EVAL_N:-5}                           # Eval: samples per test question (pass@1 and pass@EVAL_N)
TRAIN_SIZE=${TRAIN_SIZE:-2000}                # kept traces a round trains on (the paper: 2,000)
MAX_PER_QUESTION=${MAX_PER_QUESTION:-1}       # kept traces per question (the original kept 1)
LR=${LR:-1e-6}                                # the paper's learning rate
EPOCHS=${EPOCHS:-1}
TEMPERATURE=${TEMPERATURE:-0.8}               # Think (the paper)
EVAL_TEMPERATURE=${EVAL_TEMPERATURE:-0.7}     # Eval (the original gen_eval.py)
TEMPLATE=${TEMPLATE:-tpt}                     # prompt wording (tpt = the original's); Think, Train and Eval share it
MAX_TOKENS=${MAX_TOKENS:-1024}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-1500}
BACKEND=${BACKEND:-auto}                      # auto: vLLM on a CUDA GPU when installed, else transformers
BATCH_SIZE=${BATCH_SIZE:-32}                  # transformers backend: sequences per forward pass
LIMIT=${LIMIT:-0}                             # Think on the first LIMIT training questions (0 = all)
EVAL_LIMIT=${EVAL_LIMIT:-0}                   # Eval on the first EVAL_LIMIT test questions (0 = all)
RESAMPLE_N=${RESAMPLE_N:-0}                   # beyond the paper: Think again, this many samples each, on questions with no kept trace (0 = off)
RATIONALIZE=${RATIONALIZE:-0}                 # beyond the paper: 1 = then Think with the answer as a hint on those still unsolved
INIT_FROM=${INIT_FROM:-last}                  # last: train the previous round's model (the paper); base: STaR / ReST-EM
SEED=${SEED:-0}
REPORT_TO=${REPORT_TO:-none}                  # wandb to log training and the report to W&B
OUT=${OUT:-out/loop}
PYTHON=${PYTHON:-python}
SFT_ARGS=${SFT_ARGS:-}                        # extra sft_math.py flags, e.g. "--use_peft --per_device_train_batch_size 4"
TRAIN_LAUNCH=${TRAIN_LAUNCH:-}                # Train's launcher, one process per GPU: "torchrun --nproc_per_node 2",
                                              # "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8";
                                              # several nodes: a command that starts one torchrun --nnodes agent on each (srun)
GEN_ARGS=${GEN_ARGS:-}                        # extra gen_synth.py / gen_eval.py flags

cd "$(dirname "$0")/.."
stage() { echo; echo "=== $*"; }

# One Train process cannot use several GPUs (TRL refuses DataParallel): stop before anything loads, not at round 1.
if [ -z "$TRAIN_LAUNCH" ]; then
  gpus=$($PYTHON -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -gt 1 ]; then
    echo "error: $gpus GPUs visible and TRAIN_LAUNCH is empty: set TRAIN_LAUNCH=\"accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes $gpus\" (or ddp.yaml, deepspeed_zero3.yaml), or CUDA_VISIBLE_DEVICES to one GPU" >&2
    exit 2
  fi
fi

# Rounds never read the test set except in Eval: refuse to start when train and test share a question.
$PYTHON make_data.py check --train "$TRAIN_DATA" --test "$TEST_DATA"

eval_model() {  # eval_model MODEL_PATH OUTPUT_DIR
  $PYTHON gen_eval.py --model_name "$1" --math "$TEST_DATA" --output_dir "$2" --numsamples "$EVAL_N" \
    --temperature "$EVAL_TEMPERATURE" --max_tokens "$MAX_TOKENS" --max_model_len "$MAX_MODEL_LEN" \
    --backend "$BACKEND" --batch_size "$BATCH_SIZE" --limit "$EVAL_LIMIT" --seed "$SEED" --template "$TEMPLATE" $GEN_ARGS
}

# think_dir, think_resample_dir, think_hint_dir, data_dir, train_json, eval_json, model_dir, eval_dir,
# report_dir of round $1, and kept_file (Prune's kept traces in a Think folder): python -m tpt.layout prints them.
round_layout() { local layout; layout=$($PYTHON -m tpt.layout --out "$OUT" --round "$1"); eval "$layout"; }

round_layout 0
stage "round 0: Eval of the base model $MODEL"
eval_model "$MODEL" "$eval_dir"
evals=("$eval_dir")

think_pass() {  # think_pass MODEL_PATH OUTPUT_DIR NUM_SAMPLES SEED [gen_synth flags]: sample, then score and keep
  local model=$1 dir=$2 n=$3 seed=$4; shift 4
  $PYTHON gen_synth.py --model_name "$model" --math "$TRAIN_DATA" --output_dir "$dir" --num_samples "$n" \
    --temperature "$TEMPERATURE" --max_tokens "$MAX_TOKENS" --max_model_len "$MAX_MODEL_LEN" \
    --backend "$BACKEND" --batch_size "$BATCH_SIZE" --limit "$LIMIT" --seed "$seed" --template "$TEMPLATE" "$@" $GEN_ARGS
  $PYTHON evmath.py --samples_dir "$dir" --answer_path "$TRAIN_DATA" --num_samples "$n" \
    --max_per_question "$MAX_PER_QUESTION"
  if [ -f "$dir/$kept_file" ]; then kept+=("$dir/$kept_file"); fi
}

current=$MODEL
for r in $(seq 1 "$ROUNDS"); do
  round_layout "$r"
  kept=()
  stage "round $r: Think with $current, then Prune"
  think_pass "$current" "$think_dir" "$N" "$((SEED + r))"
  if [ "$RESAMPLE_N" -gt 0 ]; then
    stage "round $r: Think again ($RESAMPLE_N samples) on the questions with no kept trace"
    think_pass "$current" "$think_resample_dir" "$RESAMPLE_N" "$((SEED + r + 1000))" --skip_solved "${kept[@]}"
  fi
  if [ "$RATIONALIZE" = 1 ]; then
    stage "round $r: Think with the answer as a hint on the questions still unsolved"
    think_pass "$current" "$think_hint_dir" "$N" "$((SEED + r + 2000))" --hint --skip_solved "${kept[@]}"
  fi

  stage "round $r: Prune (split the kept traces of every pass)"
  $PYTHON make_json.py --input "${kept[@]}" --train_output "$train_json" --eval_output "$eval_json" \
    --train_size "$TRAIN_SIZE" --seed "$SEED" --exclude "$TEST_DATA"

  stage "round $r: Train"
  if [ "$INIT_FROM" = base ]; then init=$MODEL; else init=$current; fi
  ${TRAIN_LAUNCH:-$PYTHON} sft_math.py --model_name_or_path "$init" --train_data_path "$train_json" \
    --eval_data_path "$eval_json" --learning_rate "$LR" --num_train_epochs "$EPOCHS" \
    --output_dir "$model_dir" --seed "$SEED" --template "$TEMPLATE" --report_to "$REPORT_TO" --run_name "$(basename "$OUT")-round$r" $SFT_ARGS
  current=$model_dir

  stage "round $r: Eval of $current"
  eval_model "$current" "$eval_dir"
  evals+=("$eval_dir")
done

stage "report"
report_flags=()
[ "$REPORT_TO" = wandb ] && report_flags+=(--wandb)
$PYTHON report.py --rounds "${evals[@]}" --out "$report_dir" "${report_flags[@]}"
