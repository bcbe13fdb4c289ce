#!/usr/bin/env bash
# GPU check of the memorization -> generalization sweep (python -m benchmarks.generalization),
# one prepared script: the default family (Gaussian fields) at 64x64 with n in {1, 100, 10^4},
# a 32-channel UNet, 1500 steps of 128 per network, sized to finish within 10 minutes on one
# H100. Everything but the trained networks lands in one archive under $OUT.
#   OUT=out/check bash benchmarks/gpu_generalization.sh           # on the GPU machine
#   TINY=1 OUT=out/check bash benchmarks/gpu_generalization.sh    # CPU rehearsal at tiny size
set -uo pipefail  # no -e: a failed sweep must still archive its log
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the output folder}
work=$(mktemp -d)
if [[ -n "${TINY:-}" ]]; then
    args=(--device cpu --size 16 --channels 4 --blocks 2 --steps 4 --batch-size 8
          --sizes-n 1,4 --n-samples 2 --n-eval 4 --n-test 4 --sigmas 0.01:1:3)
else
    args=(--device cuda --size 64 --channels 32 --steps 1500 --batch-size 128
          --sizes-n 1,100,10000 --n-samples 16)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m benchmarks.generalization "${args[@]}" --runs "$work/runs" \
    --out "$work/generalization" --no-progress 2>&1 | tee "$work/generalization.log"
tar -czf "$OUT/gpu_generalization.tar.gz" --exclude=runs -C "$work" .
echo "archived $(tar -tzf "$OUT/gpu_generalization.tar.gz" | wc -l) entries into $OUT/gpu_generalization.tar.gz"
