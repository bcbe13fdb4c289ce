#!/usr/bin/env bash
# GPU check of the paper profile, one prepared script: training throughput of the fast path
# (bf16 autocast + channels_last) against plain fp32 on the same card, then the paper profile
# (80x80, the paper's 7.66 M-parameter UNet) on C^alpha for alpha in {1, 2, 4} with a fixed
# step budget each, always trained (--retrain: never the shipped weights). Everything lands
# in one archive under $OUT, so that a run cut short still brings back what it finished.
#   OUT=/tmp/check bash benchmarks/gpu_check.sh            # on the GPU machine
#   TINY=1 OUT=/tmp/check bash benchmarks/gpu_check.sh     # CPU rehearsal at tiny size
set -uo pipefail  # no -e: one failed step must not lose the others' results
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the output folder}
work=$(mktemp -d)
if [[ -n "${TINY:-}" ]]; then
    device=cpu; speed=(--n-train 200 --repeats 2 --train-size 16 --train-channels 4
                       --train-batch 8 --train-steps 2)
    paper=(--size 16 --channels 4 --steps 4 --batch-size 8 --n-train 40 --n-test 8
           --sigmas 0.01:1:5)
else
    device=cuda; speed=(--train-size 80 --train-channels 64 --train-batch 512 --train-steps 20)
    paper=(--steps 500 --n-train 10000 --n-test 64)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
archive() {  # after every step, so a run cut short still brings back what it finished
    tar -czf "$OUT/gpu_check.tar.gz" --exclude=runs -C "$work" .
}
python3 -m benchmarks.speed --device "$device" "${speed[@]}" --out "$work/speed" 2>&1 \
    | tee "$work/speed.log"
archive
for alpha in 1 2 4; do
    python3 -m benchmarks.optimality --profile paper --device "$device" --alpha "$alpha" \
        "${paper[@]}" --retrain --runs "$work/runs" --out "$work/paper_alpha$alpha" \
        --no-progress 2>&1 \
        | tee "$work/paper_alpha$alpha.log" | grep -v Warning
    archive
done
echo "archived $(tar -tzf "$OUT/gpu_check.tar.gz" | wc -l) entries into $OUT/gpu_check.tar.gz"
