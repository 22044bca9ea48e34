#!/usr/bin/env bash
# make demo: one whole TPT round on the embedded model (smollm2-135m), on the CPU, offline.
# Data from reasoning-gym (made here), then runs/loop.sh with small settings: Eval of the base model,
# Think, Prune, Train, Eval of the trained model, report. Run it again and every finished stage is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-out/demo}
export PYTHON=${PYTHON:-python}

# Sized by power and by the CPU (docs/demo.md): the task's space holds 242 distinct questions; 200 test draws keep 130
# distinct test questions and 400 train draws 96 train questions once repeats and overlap go. Eval samples 130 x 8
# = 1,040 (the paired test then detects about +-5 pts of answer pass@1), Think all 96 x 4; the plain template's
# prompts are 74 tokens (the tpt template's 155), replies at most 128 tokens; Train one epoch at lr 2e-5, without
# checkpoints (a checkpoint of weights and optimizer is ~5 s here, a third of a one-minute Train: killed, it starts over).
$PYTHON make_data.py gym --out_dir "$OUT/data" --train_size "${DEMO_TRAIN_QUESTIONS:-400}" \
  --test_size "${DEMO_TEST_QUESTIONS:-200}"

export MODEL=${MODEL:-smollm2-135m}
export TRAIN_QUESTIONS=$OUT/data/train.json TEST_QUESTIONS=$OUT/data/test.json
export ROUNDS=${ROUNDS:-1} N=${N:-4} LIMIT=${LIMIT:-0} EVAL_N=${EVAL_N:-8} TRAIN_SIZE=${TRAIN_SIZE:-200} MAX_PER_QUESTION=${MAX_PER_QUESTION:-0}
export LR=${LR:-2e-5} EPOCHS=${EPOCHS:-1} MAX_TOKENS=${MAX_TOKENS:-128} MAX_MODEL_LEN=${MAX_MODEL_LEN:-1024}
export TEMPLATE=${TEMPLATE:-plain} BACKEND=${BACKEND:-hf} BATCH_SIZE=${BATCH_SIZE:-} SEED=${SEED:-0}
export SFT_ARGS=${SFT_ARGS:-"--per_device_train_batch_size 4 --gradient_accumulation_steps 1 --logging_steps 1 --save_strategy no"}
bash runs/loop.sh
