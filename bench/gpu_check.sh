#!/usr/bin/env bash
# One prepared GPU run: the CUDA tests, then the GPU benchmarks, then a summary.
# Meant for a lent GPU machine (the device tool), from the repository root:
#     bash bench/gpu_check.sh            # writes results to ${OUT:-gpu-check}/
# It finishes well inside 8 minutes: each stage has its own time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"

echo "== environment"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
"$py" - <<'PY' 2>&1 | tee "$out/env.txt"
import importlib
for name in ("torch", "cupy", "cv2", "numpy", "scipy", "skimage", "pytest", "pytest_benchmark"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as err:  # report and go on: the stages below say what they need
        print(f"{name} MISSING ({type(err).__name__}: {err})")
import torch
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

echo "== CUDA tests (kernels, Poisson, batched executor)"
timeout 200 "$py" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_poisson.py \
    tests/test_batched.py tests/test_train.py -k "not kill and not torchrun" -rs 2>&1 \
    | tee "$out/tests.txt" | tail -25
tests_rc=${PIPESTATUS[0]}

echo "== GPU benchmarks"
timeout 240 "$py" -m pytest -q -p no:cacheprovider bench/test_bench_poisson.py bench/test_bench_train.py --benchmark-only \
    --benchmark-columns=mean,min,median,rounds --benchmark-json="$out/bench.json" 2>&1 \
    | tee "$out/bench.txt" | grep -E "test_|passed|failed|error" | head -40
bench_rc=${PIPESTATUS[0]}

echo "== summary"
"$py" - "$out/bench.json" <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as err:
    print("no benchmark results:", err); sys.exit(0)
for b in data["benchmarks"]:
    mean_ms = b["stats"]["mean"] * 1e3
    extra = b.get("extra_info", {})
    rate = f", {extra['samples_per_s']} samples/s" if "samples_per_s" in extra else ""
    print(f"{b['name']:45s} {mean_ms:9.3f} ms{rate}")
PY
echo "tests exit $tests_rc, benchmarks exit $bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
