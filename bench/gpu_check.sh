#!/usr/bin/env bash
# One prepared GPU run: every figure the project is judged by, in one summary file.
#
#     bash bench/gpu_check.sh [--out DIR] [--python PY] [--dry-run]
#
# Stages, each with its own time limit, so that the whole run stays under 6 minutes:
#   environment  the GPU (nvidia-smi) and the versions of Python, torch, CUDA, cuDNN, CuPy, ...
#   tests        pytest -m cuda on tests/ (a module that cannot be imported is an error, not a stop)
#   benchmarks   pytest bench/: each solver on 64 problems (and OpenCV's loop), the synthetic
#                batch of 64 per solver, the device pipeline's samples/s per solver, a training
#                step on a fixed batch and fed by --synth device, workers (and dali)
#   counts       python bench/device_counts.py: copies, kernel launches, syncs per batch (profiler)
#   epochs       python bench/epoch_time.py: whole epochs of 209 images, --synth device and workers
#   doctor       python -m nsa_fast.doctor
# then DIR/summary.txt (bench/gpu_summary.py) and DIR/stages.tar.gz (every stage's own output:
# env.txt, tests.xml/txt, bench.xml/json/txt, counts.json/txt, epochs.json/txt, doctor.txt). DIR
# defaults to $OUT/gpu-check when OUT is set (the device tool's folder, whose files come back,
# 8 at most), else gpu-check.
#
# Needs the repository (not installed: PYTHONPATH is set here) and a Python with a CUDA build of
# torch and torchvision, numpy, scipy, scikit-image, scikit-learn, opencv-python(-headless),
# pyyaml, tqdm, matplotlib, pytest and pytest-benchmark; CuPy (cupy-cuda12x or cupy-cuda13x) for
# the kernel rows; g++ for the kernel-emulation tests that run beside the CUDA ones. DALI,
# onnxruntime and CUDA 12's NVRTC are optional: their rows say what was skipped and why. Nothing
# is installed or downloaded.
#
# --dry-run: on a CPU-only machine, every stage through the stand-ins (tests/standin_gpu.py) at
# small sizes, so that a broken stage shows before a GPU is lent; every row is present, its
# figure a stand-in count or "no GPU".
# Exit code: 0 when every stage passed (on a GPU: every CUDA test and benchmark, the counts, the
# epochs, doctor; in a dry run: every stage's walk); 1 otherwise, or without a GPU and without
# --dry-run; 2 on bad arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; }
out="${OUT:+$OUT/gpu-check}"
out="${out:-gpu-check}"
py="${PYTHON:-python3}"
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "error: --out needs a folder, e.g. --out gpu-check" >&2; exit 2; }
               out="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || { echo "error: --python needs an interpreter, e.g. --python python3" >&2; exit 2; }
                  py="$2"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1'; expected --out DIR, --python PY or --dry-run (see --help)" >&2; exit 2 ;;
    esac
done
command -v "$py" >/dev/null 2>&1 || { echo "error: no Python interpreter '$py'; pass --python PY" >&2; exit 2; }
mkdir -p "$out" 2>/dev/null && [ -w "$out" ] || { echo "error: cannot write to the output folder '$out'; pass a writable --out" >&2; exit 2; }
final="$out"
out="$final/stages"
rm -rf "$out" "$final/summary.txt" "$final/stages.tar.gz"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

finish() {  # the summary, then the stages' files packed into one (the device tool returns 8 files at most)
    "$py" bench/gpu_summary.py "$out" "$@"
    local code=$?
    mv "$out/summary.txt" "$final/summary.txt" 2>/dev/null
    tar -czf "$final/stages.tar.gz" -C "$final" stages && rm -rf "$out"
    return $code
}

environment() {
    {
        date -u +"date %Y-%m-%d %H:%M UTC"
        if command -v nvidia-smi >/dev/null 2>&1; then
            nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
        else
            echo "nvidia-smi: not found"
        fi
        "$py" - <<'PY' 2>&1
import importlib
import sys

print("python", sys.version.split()[0])
for name in ("torch", "torchvision", "cupy", "cv2", "numpy", "scipy", "skimage", "sklearn", "pytest",
             "pytest_benchmark", "nvidia.dali", "onnxruntime"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as err:  # report and go on: the stages below say what they need
        print(f"{name} MISSING ({type(err).__name__}: {err})")
import torch

print("cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
    } > "$out/env.txt"
}

# Each stage writes its own files and its exit code (STAGE.rc); a stage that runs past its limit is
# killed (exit code 124), and the summary says so.
cuda_tests() {  # the modules that mark tests cuda (collecting all ~1100 tests costs 10 s more)
    timeout $((90 * slow)) "$py" -m pytest -q -p no:cacheprovider -m cuda $(grep -l "mark\.cuda" tests/test_*.py) \
        -rs --continue-on-collection-errors \
        --junitxml="$out/tests.xml" > "$out/tests.txt" 2>&1
    echo $? > "$out/cuda_tests.rc"
}
benchmarks() {
    timeout $((110 * slow)) "$py" -m pytest -q -p no:cacheprovider bench/ "${bench_args[@]}" -rs \
        --junitxml="$out/bench.xml" > "$out/bench.txt" 2>&1
    echo $? > "$out/benchmarks.rc"
}
counts() {
    timeout $((40 * slow)) "$py" bench/device_counts.py --out "$out/counts.json" "${counts_args[@]}" \
        > "$out/counts.txt" 2>&1
    echo $? > "$out/counts.rc"
}
epochs() {
    timeout $((80 * slow)) "$py" bench/epoch_time.py --out "$out/work" --python "$py" "${epochs_args[@]}" \
        > "$out/epochs.txt" 2>&1
    echo $? > "$out/epochs.rc"
    cp "$out/work/epochs.json" "$out/epochs.json" 2>/dev/null
    rm -rf "$out/work"
}
doctor() {
    timeout $((25 * slow)) "$py" -m nsa_fast.doctor > "$out/doctor.txt" 2>&1
    echo "doctor exit code $?" >> "$out/doctor.txt"
}
show() {  # what a person watching wants to see of a stage
    case "$1" in
        environment) cat "$out/env.txt" ;;
        cuda_tests) tail -6 "$out/tests.txt" ;;
        benchmarks) grep -E "^test_|passed|failed|error|SKIPPED" "$out/bench.txt" | head -30 ;;
        counts) tail -8 "$out/counts.txt" ;;
        epochs) tail -3 "$out/epochs.txt" ;;
        doctor) tail -4 "$out/doctor.txt" ;;
    esac
}

if [ "$dry" = 1 ]; then
    bench_args=(-m cuda --standin-gpu --benchmark-disable)
    counts_args=(--standin --batch 16)
    epochs_args=(--dry-run)
    slow=6  # all stages at once, sharing the CPU (and perhaps a busy machine: nothing is timed)
    # Nothing is timed in a dry run, so the stages run side by side.
    for stage in environment cuda_tests benchmarks counts epochs doctor; do "$stage" & done
    wait
    for stage in environment cuda_tests benchmarks counts epochs doctor; do echo "== $stage"; show "$stage"; done
else
    bench_args=(--benchmark-only -k "cuda or device_pipeline or opencv_loop" --benchmark-json="$out/bench.json"
                --benchmark-columns=mean,min,median,rounds)
    counts_args=()
    epochs_args=()
    slow=1
    if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "no CUDA GPU is visible to $py" > "$out/env.txt"
        finish --no-gpu >/dev/null
        echo "error: no CUDA GPU is visible to $py; on a CPU-only machine run bash bench/gpu_check.sh --dry-run" >&2
        exit 1
    fi
    echo "== environment"; environment; show environment
    # One stage at a time: the timings are the GPU's alone.
    for stage in cuda_tests benchmarks counts epochs doctor; do
        echo "== $stage (at ${SECONDS} s)"; "$stage"; show "$stage"
    done
fi

echo "== summary ($final/summary.txt, after ${SECONDS} s)"
if [ "$dry" = 1 ]; then
    finish --dry-run
else
    finish
fi
