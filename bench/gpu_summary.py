"""The summary of ``bash bench/gpu_check.sh``: every figure of a GPU check in one text file.

    python bench/gpu_summary.py DIR     # reads DIR/{env.txt,tests.xml,bench.xml,bench.json,doctor.txt}

Rows whose benchmark did not run say "no CUDA" (or what else is missing), so the same file
comes out of a CPU-only machine, where it says what was not measured; a benchmark that failed
says FAILED. The check passes when every CUDA test and benchmark passed and doctor exited 0.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SOLVE = "test_solve_batched_cuda[{}]"
BATCH = "test_batch_batched_executor[cuda-{}]"
STEP_FIXED = "test_train_step_cuda"
STEP_FED = "test_train_step_cuda_fed_by[{}]"
DATA_PATH_LIMIT = 0.10  # the --gpu-blend data path may cost at most this share of a step


def _bench(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {b["name"]: b for b in data.get("benchmarks", [])}


def _ms(rows: dict, name: str) -> float | None:
    row = rows.get(name)
    return None if row is None else row["stats"]["mean"] * 1e3


def outcomes(path: Path) -> dict[str, str] | None:
    """Test name -> passed, failed or skipped, from pytest's JUnit XML; None when it is missing."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out = {}
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        out[f"{case.get('classname')}::{case.get('name')}"] = (
            "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed")
    return out


def test_counts(path: Path) -> tuple[dict[str, int], list[str]]:
    """Passed/failed/skipped counts and the failed tests' names from pytest's JUnit XML."""
    found = outcomes(path)
    if found is None:
        return {"passed": 0, "failed": 0, "skipped": 0}, ["(no test report: the test stage did not finish)"]
    counts = {k: sum(v == k for v in found.values()) for k in ("passed", "failed", "skipped")}
    return counts, [name for name, v in found.items() if v == "failed"]


def _doctor_code(path: Path) -> int | None:
    try:
        lines = path.read_text().strip().splitlines()
        return int(lines[-1].rsplit(" ", 1)[1]) if lines and lines[-1].startswith("doctor exit code") else None
    except (OSError, ValueError):
        return None


def summarize(folder: Path) -> tuple[str, bool]:
    """The summary text, and whether every CUDA test passed (and any ran)."""
    lines = ["# nsa_fast GPU check", ""]
    env = folder / "env.txt"
    lines += ["## Environment", env.read_text().strip() if env.is_file() else "(no env.txt)", ""]
    counts, failed = test_counts(folder / "tests.xml")
    lines += ["## CUDA tests (pytest -m cuda tests/)",
              f"passed {counts['passed']}, failed {counts['failed']}, skipped {counts['skipped']}"]
    lines += [f"FAILED {name}" for name in failed]
    ok = not failed and counts["passed"] > 0
    if counts["passed"] == 0 and not failed:
        lines.append("no CUDA test ran (no CUDA device visible)")
    rows = _bench(folder / "bench.json")
    na = "no CUDA" if rows or (folder / "bench.json").is_file() else "no benchmark results"
    bench = outcomes(folder / "bench.xml") or {}
    failed_bench = sorted(name for name, v in bench.items() if v == "failed")
    failed_short = {name.split("::")[-1] for name in failed_bench}

    def fmt(ms, name=None):
        if name in failed_short:
            return "FAILED" + ("" if ms is None else f" (after {ms:.2f} ms)")
        return na if ms is None else f"{ms:.2f} ms"

    lines += ["", "## Poisson solve, 64 bottle-preset problems at 224 px (mean of the rounds)"]
    cv = _ms(rows, "test_solve_opencv_loop")
    lines.append(f"OpenCV loop (CPU, one core): {fmt(cv, 'test_solve_opencv_loop')}")
    solves = {s: _ms(rows, SOLVE.format(s)) for s in ("dst", "sor", "jacobi")}
    for s, ms in solves.items():
        lines.append(f"CUDA {s}: {fmt(ms, SOLVE.format(s))}")
    measured = {s: ms for s, ms in solves.items() if ms is not None and SOLVE.format(s) not in failed_short}
    if measured:
        fastest = min(measured, key=measured.get)
        lines.append(f"fastest on this GPU: {fastest} (--solver auto takes AUTO['cuda'] in nsa_fast/blend/pick.py)")
    lines += ["", "## Synthetic batch of 64 (bottle, logistic labels) on the GPU"]
    for s in ("dst", "sor"):
        row = rows.get(BATCH.format(s))
        rate = "" if row is None else f", {64 / row['stats']['mean']:.0f} samples/s"
        lines.append(f"solver {s}: {fmt(_ms(rows, BATCH.format(s)), BATCH.format(s))}{rate}")
    lines += ["", "## Training step, batch 64 at 224 px (bf16 from sm_80 on)"]
    fixed = _ms(rows, STEP_FIXED)
    lines.append(f"on a fixed batch (network only): {fmt(fixed, STEP_FIXED)}")
    for source in ("gpu_blend", "cpu_workers"):
        fed = _ms(rows, STEP_FED.format(source))
        share = ""
        if fed is not None and fixed is not None:
            frac = max(0.0, 1.0 - fixed / fed)
            share = f"; data path {100 * frac:.1f} % of the step"
            if source == "gpu_blend":
                share += " (target < 10 %: " + ("met)" if frac < DATA_PATH_LIMIT else "NOT met)")
        workers = rows.get(STEP_FED.format(source), {}).get("extra_info", {}).get("workers")
        label = "fed by --gpu-blend" if source == "gpu_blend" else f"fed by CPU workers ({workers or '?'})"
        lines.append(f"{label}: {fmt(fed, STEP_FED.format(source))}{share}")
    if failed_bench:
        lines += ["", "## Failed benchmarks (see the benchmark stage's output)"] + [f"FAILED {n}" for n in failed_bench]
    doctor = folder / "doctor.txt"
    lines += ["", "## doctor", doctor.read_text().strip() if doctor.is_file() else "(doctor did not run)"]
    code = _doctor_code(doctor)
    ok = ok and not failed_bench and code == 0
    lines += ["", f"check {'PASSED' if ok else 'FAILED'}: CUDA tests {'ok' if counts['passed'] and not failed else 'not ok'}, "
              f"benchmarks {'ok' if not failed_bench else f'{len(failed_bench)} failed'}, doctor exit code {code}"]
    return "\n".join(lines) + "\n", ok


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("error: expected one argument, the folder gpu_check.sh wrote (with env.txt, tests.xml, "
              f"bench.json, doctor.txt); got {argv!r}", file=sys.stderr)
        return 2
    text, ok = summarize(Path(argv[0]))
    (Path(argv[0]) / "summary.txt").write_text(text)
    print(text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
