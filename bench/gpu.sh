#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, runs the step benchmark on every
# GPU backend that is present (webgpu through Dawn + Vulkan, tensorflow through
# tfjs-node-gpu), PyTorch CUDA beside it when `import torch` works and sees a
# GPU, and a short `agon train` of the MNIST DCGAN on webgpu twice (same seed,
# so the two weight hashes must agree). Everything lands as JSON/PNG in $OUT_DIR.
#
#   bash bench/gpu.sh                 # in a checkout after `npm ci`
#   OUT_DIR=/tmp/gpu bash bench/gpu.sh
#
# The commands can be swapped for a bundled kit (see bench/gpu-kit.sh):
#   AGON="node kit/agon.mjs" BENCH="node kit/bench.mjs" TORCH_STEP=kit/torch_step.py
set -uo pipefail

OUT_DIR=${OUT_DIR:-bench/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
AGON=${AGON:-node shared/cli/agon.js}
BENCH=${BENCH:-npx tsx bench/index.ts}
TORCH_STEP=${TORCH_STEP:-bench/torch_step.py}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-30}
BATCHES=${BATCHES:-64}
TRAIN_STEPS=${TRAIN_STEPS:-300}
mkdir -p "$OUT_DIR"
say() { printf 'gpu.sh: %s\n' "$*" | tee -a "$OUT_DIR/summary.txt"; }

if command -v nvidia-smi >/dev/null; then
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
  say "no nvidia-smi: not an NVIDIA machine; the GPU rows will be skipped"
fi

has_cuda_torch() {
  $PYTHON -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}
for batch in $BATCHES; do
  # 1. tfjs on each GPU backend (a backend that is absent fails its cells with one line);
  #    step.ts also runs its PyTorch CPU twin when python has torch.
  # shellcheck disable=SC2086
  $BENCH step --backends webgpu,tensorflow --models mlp,dcgan --steps "$STEPS" --batch "$batch" \
    --json "$OUT_DIR/tfjs-step-b$batch.json" 2>&1 | tee "$OUT_DIR/tfjs-step-b$batch.txt"
  # 2. PyTorch on the same GPU.
  if has_cuda_torch; then
    $PYTHON "$TORCH_STEP" --device cuda --models mlp,dcgan --steps "$STEPS" --batch "$batch" \
      >"$OUT_DIR/torch-cuda-b$batch.json" &&
      say "pytorch cuda batch $batch: $($PYTHON - "$OUT_DIR/torch-cuda-b$batch.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(d["torch"], d["device"], ", ".join(f"{r['model']} {r['medianMs']:.2f} ms/step" for r in d["results"]))
PY
)"
  else
    say "pytorch cuda: skipped (no torch with a CUDA device in $PYTHON)"
  fi
done

# 3. Train the MNIST DCGAN on webgpu, twice: the same config and seed must give the same bits.
for run in 1 2; do
  dir="$OUT_DIR/train-$run"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  $AGON train --model dcgan --dataset mnist --steps "$TRAIN_STEPS" --batch 64 --shards 1 \
    --set samples.every=100 checkpoint.every=1000 --run-dir "$dir" --backend webgpu --fresh --json \
    >"$dir.json" 2>"$dir.log"
  rc=$?
  end=$(date +%s.%N)
  say "train $run: exit $rc, $(awk -v a="$start" -v b="$end" -v n="$TRAIN_STEPS" 'BEGIN{printf "%.1f s, %.1f steps/s", b-a, n/(b-a)}'), $(tail -c 400 "$dir.json")"
  [ $rc -eq 0 ] || tail -5 "$dir.log" | tee -a "$OUT_DIR/summary.txt"
done
if [ -s "$OUT_DIR/train-1.json" ] && cmp -s <(grep -o '"hashes":{[^}]*}' "$OUT_DIR/train-1.json") \
  <(grep -o '"hashes":{[^}]*}' "$OUT_DIR/train-2.json"); then
  say "webgpu determinism: both runs ended with the same G and D hashes"
else
  say "webgpu determinism: the two runs' hashes DIFFER (or a run failed)"
fi
cp "$OUT_DIR/train-1/samples/latest.png" "$OUT_DIR/webgpu-dcgan-samples.png" 2>/dev/null || true

# 4. Distributed on the GPU: a coordinator and 2 webgpu workers (K=2) must end with the
#    hashes of `agon train` on webgpu with the same config (needs nats-server on PATH).
if command -v nats-server >/dev/null; then
  cfg=(--model dcgan --dataset mnist --steps 100 --batch 64 --shards 2
    --set samples.every=50 checkpoint.every=1000)
  nats-server -a 127.0.0.1 -p 4333 >/dev/null 2>&1 &
  nats=$!
  # shellcheck disable=SC2086
  $AGON train "${cfg[@]}" --run-dir "$OUT_DIR/dist-ref" --backend webgpu --fresh --json \
    >"$OUT_DIR/dist-ref.json" 2>"$OUT_DIR/dist-ref.log"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  $AGON coordinator "${cfg[@]}" --run-dir "$OUT_DIR/dist" --backend webgpu --fresh \
    --nats nats://127.0.0.1:4333 --listen 127.0.0.1:7333 >"$OUT_DIR/dist-coord.json" \
    2>"$OUT_DIR/dist-coord.log" &
  coord=$!
  for w in 1 2; do
    # shellcheck disable=SC2086
    $AGON worker --coordinator 127.0.0.1:7333 --nats nats://127.0.0.1:4333 --name "gpu-$w" \
      --backend webgpu 2>"$OUT_DIR/dist-worker-$w.log" &
  done
  wait $coord
  end=$(date +%s.%N)
  sleep 3 # workers exit on the coordinator's Finished; stragglers (a failed start) are stopped
  kill $(jobs -p) 2>/dev/null
  wait
  ref=$(grep -o '"hashes":{[^}]*}' "$OUT_DIR/dist-ref.json")
  got=$(grep -o '"hashes":{[^}]*}' "$OUT_DIR/dist-coord.json")
  say "distributed webgpu (2 workers, K=2, 100 steps in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s): $got"
  if [ -n "$ref" ] && [ "$ref" = "$got" ]; then
    say "distributed webgpu: equals agon train on webgpu ($ref)"
  else
    say "distributed webgpu: DIFFERS from agon train on webgpu ($ref)"
  fi
  grep -h "webgpu on" "$OUT_DIR"/dist-worker-*.log | head -2 | tee -a "$OUT_DIR/summary.txt"
else
  say "distributed webgpu: skipped (no nats-server on PATH)"
fi
say "results in $OUT_DIR"
