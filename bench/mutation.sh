#!/usr/bin/env bash
# Mutation testing with mutmut 3 (docs/mutation.md), in a copy of the working tree so that
# mutmut's mutants/ folder and its runs never touch the checkout.
#
#   bash bench/mutation.sh                                 # the default module list below
#   bash bench/mutation.sh nsa_fast/metrics.py nsa_fast/blend
#
# Arguments: modules (files) or packages (folders) under nsa_fast/. Environment:
#   MUTMUT_TESTS   test files mutmut may pick from (default: the files that reach each module,
#                  from the table below: its own tests/test_<module>.py and the twins' tests)
#   MUTMUT_NAMES   mutant-name globs to run (default: all of the modules), e.g. for the loss and
#                  schedule of train.py: "nsa_fast.train.x_loss_fn*" "nsa_fast.train.x_build_model*"
#   MAX_CHILDREN   parallel mutant runs (default 1: leaves the other cores alone)
#   KEEP=1         keep the temporary copy (its mutants/ folder: mutmut results / show <name>)
#   PYTHON         the interpreter whose environment has mutmut (default .venv/bin/python)
#
# Not part of the test suite (bench/ is not collected, and this is a shell script). It takes
# about 50 minutes for five modules on 2 shared cores (2026-12-01); the full list takes hours.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
PYTHON=${PYTHON:-$repo/.venv/bin/python}
MAX_CHILDREN=${MAX_CHILDREN:-1}
if ! "$PYTHON" -c "import mutmut" 2>/dev/null; then
    echo "mutation.sh: $PYTHON has no mutmut; install it with: $PYTHON -m pip install -e '.[mutation]'" \
         "(mutmut==3.8.1), or set PYTHON to an interpreter that has it" >&2
    exit 2
fi
mutmut() { "$PYTHON" -c "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; sys.exit(cli())" "$@"; }

if [ $# -eq 0 ]; then
    set -- nsa_fast/sampler.py nsa_fast/labels.py nsa_fast/median.py nsa_fast/filters.py nsa_fast/blend \
           nsa_fast/metrics.py nsa_fast/transforms.py nsa_fast/pipelines.py nsa_fast/train.py
fi

# only_mutate globs and the test files of the modules
globs=()
tests=()
for m in "$@"; do
    m=${m#./}
    m=${m%/}
    case "$m" in
        nsa_fast/*) ;;
        *) echo "mutation.sh: modules are paths under nsa_fast/ (e.g. nsa_fast/labels.py), got $m" >&2; exit 2 ;;
    esac
    if [ -d "$repo/$m" ]; then
        globs+=("$m/*")
    elif [ -f "$repo/$m" ]; then
        globs+=("$m")
    else
        echo "mutation.sh: no such module or package: $m" >&2
        exit 2
    fi
    base=$(basename "$m" .py)
    # a module's own test file, and the files that reach its other paths (torch twins, executors)
    case "$base" in
        blend) cands="tests/test_poisson.py tests/test_solvers.py tests/test_batched.py tests/test_blend_ops.py
                      tests/test_executor.py tests/test_transfers.py tests/test_standin_cupy.py tests/test_nvrtc.py tests/test_kernels.py
                      tests/test_kernel_sources.py tests/test_doctor.py" ;;
        # the CUDA launcher, NVRTC and the kernel sources: through the stand-in CuPy and NVRTC
        cuda|nvrtc|kernels|pick) cands="tests/test_standin_cupy.py tests/test_nvrtc.py tests/test_kernels.py
                                        tests/test_kernel_sources.py tests/test_solvers.py tests/test_doctor.py" ;;
        ops|batched|opencv) cands="tests/test_blend_ops.py tests/test_batched.py tests/test_executor.py
                                   tests/test_transfers.py tests/test_labels.py" ;;
        pipelines) cands="tests/test_pipelines.py tests/test_dali_loader.py tests/test_transfers.py
                          tests/test_randomness.py" ;;
        median|poisson) cands="tests/test_$base.py tests/test_batched.py tests/test_solvers.py" ;;
        # (not test_layout.py: it counts lines, and mutmut's copies of the modules are longer)
        filters|objects) cands="tests/test_$base.py tests/test_filters.py tests/test_batched.py" ;;
        metrics|transforms) cands="tests/test_$base.py tests/test_batched.py" ;;
        labels) cands="tests/test_labels.py tests/test_batched.py" ;;
        sampler) cands="tests/test_sampler.py tests/test_randomness.py" ;;
        train) cands="tests/test_recipe.py" ;;
        *) cands="tests/test_$base.py tests/test_blend_$base.py" ;;
    esac
    for t in $cands; do
        [ -f "$repo/$t" ] && tests+=("$t")
    done
done
# each test file once, in the order first named
if [ ${#tests[@]} -gt 0 ]; then
    mapfile -t tests < <(printf '%s\n' "${tests[@]}" | awk '!seen[$0]++')
fi
if [ -n "${MUTMUT_TESTS:-}" ]; then
    read -r -a tests <<< "$MUTMUT_TESTS"
fi
if [ ${#tests[@]} -eq 0 ]; then
    echo "mutation.sh: no test files for $*; set MUTMUT_TESTS" >&2
    exit 2
fi

toml_list() { local out="" x; for x in "$@"; do out+="\"$x\", "; done; echo "[${out%, }]"; }

work=$(mktemp -d -t nsa_mutation.XXXXXX)  # under $TMPDIR (default /tmp)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# The working tree as it is (tracked and untracked files, without ignored ones such as .venv).
git -C "$repo" ls-files -z -co --exclude-standard | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$work"

if grep -q '^\[tool.mutmut\]' "$work/pyproject.toml"; then
    echo "mutation.sh: pyproject.toml has its own [tool.mutmut] section; it is used as it is and the" \
         "modules given here are ignored" >&2
else
    cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["nsa_fast/"]
only_mutate = $(toml_list "${globs[@]}")
pytest_add_cli_args_test_selection = $(toml_list "${tests[@]}")
also_copy = ["kernels/", "README.md"]
EOF
fi
sed -n '/^\[tool.mutmut\]/,$p' "$work/pyproject.toml"

cd "$work"
# One thread per process: the workers are forked from a process that has imported torch.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
start=$(date +%s)
# MUTMUT_NAMES: mutant-name globs to run instead of all (e.g. "nsa_fast.train.x_loss_fn*"
# "nsa_fast.train.x_build_model*": the loss and schedule of train.py); the others stay unrun.
read -r -a names <<< "${MUTMUT_NAMES:-}"
mutmut run --max-children "$MAX_CHILDREN" "${names[@]}" > mutmut-run.log 2>&1 || { tail -c 3000 mutmut-run.log; exit 1; }
end=$(date +%s)
mutmut results || true

# Per module, from mutmut's own exit codes (mutmut/stats.py): killed = a test failed (1, 3);
# timeout (36, +-24, 152, 255) and crash (-11, -9) also count as detected; survived (0) and
# "no tests" (5, 33) as not detected. Score here = detected / mutants, before equivalent mutants
# are judged (docs/mutation.md subtracts those).
"$PYTHON" - "$((end - start))" <<'EOF'
import json, pathlib, sys
KILLED, TIMEOUT, CRASH, SURVIVED, NO_TESTS = {1, 3}, {36, -24, 24, 152, 255}, {-11, -9}, {0}, {5, 33}
print(f"\nwall time of mutmut run: {sys.argv[1]} s")
print(f"{'module':32} {'mutants':>7} {'killed':>7} {'timeout':>7} {'crash':>5} {'survived':>8} {'no tests':>8} "
      f"{'other':>5} {'score':>6}")
for meta in sorted(pathlib.Path("mutants").rglob("*.py.meta")):
    codes = [c for c in json.loads(meta.read_text())["exit_code_by_key"].values() if c is not None]  # None: not run
    if not codes:
        continue
    k, t, x, s, z = (sum(1 for c in codes if c in g) for g in (KILLED, TIMEOUT, CRASH, SURVIVED, NO_TESTS))
    other = len(codes) - k - t - x - s - z
    name = str(meta.relative_to("mutants"))[:-5]
    print(f"{name:32} {len(codes):7} {k:7} {t:7} {x:5} {s:8} {z:8} {other:5} {(k + t + x) / len(codes):6.1%}")
EOF
