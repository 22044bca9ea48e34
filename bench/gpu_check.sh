#!/usr/bin/env bash
# The first-GPU check: run it on any machine with a CUDA GPU (the embedded model, no hub). Under 8 minutes: the
# steps' time limits add up to 7.5 (a step over its limit is killed and reported as timed_out).
#
#   bash bench/gpu_check.sh [RESULTS_DIR]     # default bench/results/gpu_check-<host>-<UTC time>
#   PYTHON=.venv-vllm/bin/python bash bench/gpu_check.sh
#
# Steps, each a real script in its own process (GPU memory freed between them), each leaving <step>.json:
#   env            nvidia-smi, torch/CUDA/vLLM versions, bf16 support
#   think_hf       gen_synth.py --backend hf on CUDA: 8 GSM8K test questions x 4 samples, bf16
#   train_bf16     sft_math.py: one bf16 optimizer step on 16 GSM8K train solutions, model folder saved
#   reload_hf      gen_synth.py --backend hf on the saved folder (the next round's Think)
#   think_vllm     gen_synth.py --backend vllm: 8 questions x 4 samples          (only where vllm imports)
#   eval_vllm      gen_eval.py --backend vllm --temperature 0: greedy with 10 samples, scored
#   reload_vllm    gen_synth.py --backend vllm on the saved folder
#   dp_vllm        gen_synth.py --backend vllm --ray local --data_parallel_size 2 (only with 2+ GPUs)
# then summary.json (every step's status, seconds and figures). Exit status 1 if any step failed.
# Without a CUDA device it writes env.json and summary.json saying so and exits 0 (a dry run); GPU_CHECK_FORCE=1
# runs the steps anyway (on the CPU: a check of this script's plumbing, not of a GPU; GPU_CHECK_SLOWDOWN=20
# multiplies every time limit, as a CPU needs).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-bench/results/gpu_check-$(hostname)-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
echo "gpu_check: results in $OUT"
TEST=../shared/data/gsm8k/test.jsonl
TRAIN=../shared/data/gsm8k/train.jsonl
COMMON=(--model_name smollm2-135m --questions "$TEST" --limit 8 --max_tokens 128 --max_model_len 1024)

# One step: NAME TIMEOUT_S COMMAND... -> $OUT/NAME.log and $OUT/NAME.json {step, status, rc, seconds}.
step() {
    local name=$1 limit=$2; shift 2
    local start=$SECONDS rc
    timeout $((limit * ${GPU_CHECK_SLOWDOWN:-1})) "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local status=passed
    [ $rc -eq 0 ] || status=failed
    [ $rc -eq 124 ] && status=timed_out
    printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %d}\n' "$name" "$status" "$rc" \
        $((SECONDS - start)) >"$OUT/$name.json"
    echo "  $name: $status ($((SECONDS - start)) s) -> $OUT/$name.log"
    return $rc
}

# env.json: what this machine is. Prints the number of visible CUDA devices (0 = dry run).
GPUS=$("$PYTHON" - "$OUT" <<'EOF'
import importlib.util, json, subprocess, sys
import torch
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda, "devices": [], "vllm": None}
if torch.cuda.is_available():
    info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["bf16_supported"] = torch.cuda.is_bf16_supported()
if importlib.util.find_spec("vllm") is not None:
    import vllm
    info["vllm"] = vllm.__version__
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                         "--format=csv,noheader"], capture_output=True, text=True,
                                        timeout=30).stdout.strip().splitlines()
except (OSError, subprocess.TimeoutExpired) as e:
    info["nvidia_smi"] = f"not run: {e}"
json.dump(info, open(f"{sys.argv[1]}/env.json", "w"), indent=2)
print(len(info["devices"]))
EOF
) || { echo "gpu_check: $PYTHON cannot import torch"; exit 1; }
echo "  env: $(tr -d '\n' <"$OUT/env.json" | head -c 300)"

if [ "$GPUS" -eq 0 ] && [ -z "${GPU_CHECK_FORCE:-}" ]; then
    echo '{"cuda": false, "ran": [], "note": "no CUDA device visible: nothing was checked on a GPU"}' >"$OUT/summary.json"
    echo "gpu_check: no CUDA device visible; nothing to check (dry run). Wrote $OUT/env.json and summary.json"
    exit 0
fi

head -16 "$TRAIN" >"$OUT/train16.jsonl"
step think_hf 60 "$PYTHON" gen_synth.py "${COMMON[@]}" --backend hf --dtype bfloat16 --num_samples 4 \
    --batch_size 32 --samples_dir "$OUT/think_hf"
step train_bf16 90 "$PYTHON" sft_math.py --model_name_or_path smollm2-135m --train_traces "$OUT/train16.jsonl" \
    --output_dir "$OUT/model" --max_steps 1 --bf16 true --learning_rate 1e-5 --report_to none
step reload_hf 40 "$PYTHON" gen_synth.py "${COMMON[@]}" --model_name "$OUT/model" --backend hf --limit 2 \
    --num_samples 2 --samples_dir "$OUT/reload_hf"
if "$PYTHON" -c "import vllm" >/dev/null 2>&1; then
    step think_vllm 100 "$PYTHON" gen_synth.py "${COMMON[@]}" --backend vllm --num_samples 4 \
        --gpu_memory_utilization 0.5 --samples_dir "$OUT/think_vllm"
    step eval_vllm 50 "$PYTHON" gen_eval.py "${COMMON[@]}" --backend vllm --temperature 0 \
        --enforce_eager --gpu_memory_utilization 0.5 --samples_dir "$OUT/eval_vllm"
    step reload_vllm 50 "$PYTHON" gen_synth.py "${COMMON[@]}" --model_name "$OUT/model" --backend vllm \
        --num_samples 2 --enforce_eager --gpu_memory_utilization 0.5 --samples_dir "$OUT/reload_vllm"
    if [ "$GPUS" -ge 2 ]; then
        step dp_vllm 60 "$PYTHON" gen_synth.py "${COMMON[@]}" --backend vllm --num_samples 4 \
            --ray local --data_parallel_size 2 --gpu_memory_utilization 0.5 --samples_dir "$OUT/dp_vllm"
    fi
fi

# summary.json: every step's status plus the manifests' figures; exit 1 if any step did not pass.
"$PYTHON" - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
steps = {}
for path in sorted(glob.glob(f"{out}/*.json")):
    name = os.path.basename(path)[:-5]
    if name in ("env", "summary"):
        continue
    steps[name] = json.load(open(path))
    manifest = os.path.join(out, name if name != "train_bf16" else "model", "manifest.json")
    if os.path.exists(manifest):
        m = json.load(open(manifest))
        keep = ("backend", "num_questions", "num_samples", "generated_tokens", "tokens_per_second", "truncated",
                "load_seconds", "scores", "train_loss", "train_runtime", "global_step", "dtype")
        steps[name]["manifest"] = {k: m[k] for k in keep if k in m}
ok = all(s["status"] == "passed" for s in steps.values())
env = json.load(open(f"{out}/env.json"))
json.dump({"cuda": bool(env["devices"]), "passed": ok, "steps": steps, "env": env},
          open(f"{out}/summary.json", "w"), indent=2)
print(f"gpu_check: {'all passed' if ok else 'FAILED: ' + ', '.join(k for k, s in steps.items() if s['status'] != 'passed')}"
      f" -> {out}/summary.json")
sys.exit(0 if ok else 1)
EOF
