#!/usr/bin/env bash
# Distinct questions kept and tokens spent: the plain Think pass, + resampling, + rationalization.
# The demo's model, data (make demo's out/demo/data) and Think settings; one round's passes only, as runs/loop.sh
# runs them (same seeds), then a table from the passes' manifests and kept-trace files.
#
#   OUT=out/bench_passes RESAMPLE_N=8 bash bench/think_passes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-out/demo/data/train.json}
OUT=${OUT:-out/bench_passes}
N=${N:-4} RESAMPLE_N=${RESAMPLE_N:-8} LIMIT=${LIMIT:-40} SEED=${SEED:-1}
[ -f "$DATA" ] || $PYTHON make_data.py gym --out_dir "$(dirname "$DATA")" --train_size 160 --test_size 64
common=(--model_name smollm2-135m --questions "$DATA" --temperature 0.8 --max_tokens 160 --max_model_len 1024
        --backend hf --batch_size 32 --limit "$LIMIT" --template tpt)
pass() {  # pass DIR NUM_SAMPLES SEED [flags]
  local dir=$1 n=$2 seed=$3; shift 3
  $PYTHON gen_synth.py "${common[@]}" --samples_dir "$dir" --num_samples "$n" --seed "$seed" "$@"
  if [ -f "$dir/e0.json" ] && [ ! -f "$dir/evmath_manifest.json" ]; then
    $PYTHON evmath.py --samples_dir "$dir" --questions "$DATA" --num_samples "$n" --max_per_question 0
  fi
}
pass "$OUT/think" "$N" "$SEED"
pass "$OUT/think_resample" "$RESAMPLE_N" "$((SEED + 1000))" --skip_solved "$OUT/think/correct_answers.json"
pass "$OUT/think_hint" "$N" "$((SEED + 2000))" --hint --skip_solved "$OUT/think/correct_answers.json" \
  "$OUT/think_resample/correct_answers.json"
$PYTHON - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows, questions, tokens = [], set(), 0
for name, label in (("think", "plain"), ("think_resample", "+ resampling"), ("think_hint", "+ rationalization")):
    d = os.path.join(out, name)
    m = json.load(open(os.path.join(d, "manifest.json")))
    kept_path = os.path.join(d, "correct_answers.json")
    kept = json.load(open(kept_path)) if os.path.isfile(kept_path) else []
    s = json.load(open(os.path.join(d, "pass_at_k_results.json"))) if os.path.isfile(kept_path) else {}
    questions |= {r["idt"] for r in kept}
    tokens += m["generated_tokens"]
    rows.append(f"| {label} | {m['num_questions']} × {m['num_samples']} | {len(kept)} | {len({r['idt'] for r in kept})} | "
                f"{s.get('num_hint_leaks', 0)} | {len(questions)} | {tokens} | {tokens / max(len(questions), 1):.0f} | "
                f"{m.get('generation_seconds', 0):.0f} |")
print("| pass | questions × samples | kept traces | new questions kept | hinted traces dropped (lean on hint) | "
      "distinct questions kept (cumulative) | tokens (cumulative) | tokens per kept question | seconds |")
print("|---" * 9 + "|")
print("\n".join(rows))
PY
