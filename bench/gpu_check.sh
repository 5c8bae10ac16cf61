#!/usr/bin/env bash
# One prepared GPU run: the CUDA-marked tests, the GPU benchmarks and doctor, then one summary.
#
#     bash bench/gpu_check.sh [--out DIR] [--python PY]
#
# Writes DIR/summary.txt (every figure), beside env.txt, tests.xml, tests.txt, bench.json and
# doctor.txt; DIR defaults to $OUT/gpu-check when OUT is set (the device tool's folder that comes
# back), else gpu-check. Needs nothing beyond the repository and the machine's Python with torch,
# pytest and pytest-benchmark (CuPy for the kernel rows). Each stage has its own time limit so the
# whole run stays inside 6 minutes. Exit code: 0 when every CUDA test and GPU benchmark passed and
# doctor found the GPU path working; 1 when one of them failed or nothing could run on a GPU;
# 2 on bad arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
out="${OUT:+$OUT/gpu-check}"
out="${out:-gpu-check}"
py="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "error: --out needs a folder, e.g. --out gpu-check" >&2; exit 2; }
               out="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || { echo "error: --python needs an interpreter, e.g. --python python3" >&2; exit 2; }
                  py="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1'; expected --out DIR or --python PY (see --help)" >&2; exit 2 ;;
    esac
done
command -v "$py" >/dev/null 2>&1 || { echo "error: no Python interpreter '$py'; pass --python PY" >&2; exit 2; }
mkdir -p "$out" 2>/dev/null || { echo "error: cannot create the output folder '$out'; pass a writable --out" >&2; exit 2; }
rm -f "$out"/{env.txt,tests.xml,tests.txt,bench.xml,bench.json,doctor.txt,summary.txt}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

echo "== environment"
{
    nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
    "$py" - <<'PY' 2>&1
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
} | tee "$out/env.txt"

echo "== CUDA tests"
timeout 150 "$py" -m pytest -q -p no:cacheprovider -m cuda tests/ -rs --junitxml="$out/tests.xml" 2>&1 \
    | tee "$out/tests.txt" | tail -15

echo "== GPU benchmarks"
timeout 150 "$py" -m pytest -q -p no:cacheprovider bench/test_bench_poisson.py bench/test_bench_train.py \
    --benchmark-only -k "cuda or gpu_blend or opencv_loop" --benchmark-columns=mean,min,median,rounds \
    --benchmark-json="$out/bench.json" --junitxml="$out/bench.xml" 2>&1 \
    | grep -E "test_|passed|failed|error|skipped" | head -30

echo "== doctor"
timeout 40 "$py" -m nsa_fast.doctor > "$out/doctor.txt" 2>&1
echo "doctor exit code $?" >> "$out/doctor.txt"
tail -4 "$out/doctor.txt"

echo "== summary ($out/summary.txt)"
"$py" bench/gpu_summary.py "$out"
