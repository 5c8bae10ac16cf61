"""The summary of ``bash bench/gpu_check.sh``: every figure of a GPU check in one text file.

    python bench/gpu_summary.py DIR [--dry-run | --no-gpu]

Reads the stage files gpu_check.sh leaves in DIR (env.txt, tests.xml, bench.xml, bench.json,
counts.json, epochs.json, doctor.txt) and writes DIR/summary.txt. Every row is always present:
a figure; FAILED (the stage or benchmark failed); "skipped" with pytest's reason; "did not run"
(its stage ended first); or, in a dry run on the CPU, "no GPU" beside what the stand-in showed.
The check passes when every stage passed: on a GPU every CUDA test (and some ran), every
benchmark but those skipped for an optional package, the counts, the epochs and doctor (exit 0);
in a dry run every stage's walk (doctor may say that there is no GPU).
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SOLVERS = ("dst", "sor", "jacobi")
SOLVE = "test_solve_batched_cuda[{}]"
EXECUTOR = "test_batch_batched_executor_cuda[{}]"
PIPELINE = "test_device_pipeline_batch[{}]"
STEP_FIXED = "test_train_step_cuda"
STEP_FED = "test_train_step_cuda_fed_by[{}]"
OPENCV = "test_solve_opencv_loop"
FEEDS = ("device", "workers", "dali")
OPTIONAL_FEEDS = ("dali",)  # may be skipped (not installed) without failing the check
DATA_PATH_LIMIT = 0.10  # the --synth device data path may cost at most this share of a step
BATCH = 64
# What tests/test_device_efficiency.py holds on the stand-in, checked again on the GPU's profile:
# the CuPy launches of one batch (the disk median, and one solve a round, n_max 4, for the
# iterative solvers), copies to the host, host waits, float64 kernels, and a training step's waits
# (its loss read and, in the prefetch thread, the batch's object-mask read; two batches ahead).
CUPY_LAUNCHES = {"dst": 1, "sor": 5, "jacobi": 5}
MAX_D2H = MAX_SYNCS = 1


def unmet(counts: dict) -> list[str]:
    """The efficiency rules a device_counts.py result breaks, each in words ([] when all hold)."""
    out = []
    for s, c in counts.get("solvers", {}).items():
        if c["float64"]:
            out.append(f"{s}: {c['float64']} float64 kernels (none allowed)")
        if c["cupy"] > CUPY_LAUNCHES.get(s, 0):
            out.append(f"{s}: {c['cupy']} CuPy launches (at most {CUPY_LAUNCHES.get(s, 0)})")
        if c["d2h"] > MAX_D2H or c["syncs"] > MAX_SYNCS:
            out.append(f"{s}: {c['d2h']} copies to the host and {c['syncs']} waits (at most {MAX_D2H} and {MAX_SYNCS})")
    t = counts.get("train", {})
    if t and t.get("syncs", 0) > 2 * t.get("steps", 0) + 2:
        out.append(f"training: {t['syncs']} waits in {t['steps']} steps (at most {2 * t['steps'] + 2})")
    return out


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def outcomes(path: Path) -> dict[str, tuple[str, str]] | None:
    """Test name (the part after ::) -> (passed | failed | skipped, message), from pytest's JUnit
    XML; None when the file is missing or broken."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out = {}
    for case in root.iter("testcase"):
        kinds = {child.tag: child.get("message", "") for child in case}
        name = case.get("name", "")
        if "failure" in kinds or "error" in kinds:
            out[name] = ("failed", kinds.get("failure") or kinds.get("error", ""))
        elif "skipped" in kinds:
            out[name] = ("skipped", kinds["skipped"])
        else:
            out[name] = ("passed", "")
    return out


def test_counts(path: Path) -> tuple[dict[str, int], list[str]]:
    """Passed/failed/skipped counts and the failed tests' names from pytest's JUnit XML."""
    found = outcomes(path)
    if found is None:
        return {"passed": 0, "failed": 0, "skipped": 0}, ["(no test report: the test stage did not finish)"]
    counts = {k: sum(v[0] == k for v in found.values()) for k in ("passed", "failed", "skipped")}
    return counts, [name for name, v in found.items() if v[0] == "failed"]


def stage_end(folder: Path, stage: str) -> str:
    """How a stage ended, from the exit code gpu_check.sh wrote (STAGE.rc), for a row that says why
    its figures are missing."""
    rc = folder / f"{stage}.rc"
    code = rc.read_text().strip() if rc.is_file() else ""
    if code in ("124", "137"):
        return f"the {stage} stage was killed at its time limit"
    return f"the {stage} stage ended with exit code {code}" if code else f"the {stage} stage left no exit code"


def _doctor_code(path: Path) -> int | None:
    try:
        lines = path.read_text().strip().splitlines()
        return int(lines[-1].rsplit(" ", 1)[1]) if lines and lines[-1].startswith("doctor exit code") else None
    except (OSError, ValueError):
        return None


class Bench:
    """The benchmark stage's rows: outcome from bench.xml, figures from bench.json."""

    def __init__(self, folder: Path, dry: bool):
        self.dry, self.folder = dry, folder
        self.outcome = outcomes(folder / "bench.xml") or {}
        self.rows = {b["name"]: b for b in _json(folder / "bench.json").get("benchmarks", [])}

    def ms(self, name: str) -> float | None:
        row = self.rows.get(name)
        return None if row is None else row["stats"]["mean"] * 1e3

    def info(self, name: str) -> dict:
        return self.rows.get(name, {}).get("extra_info", {})

    def measured(self, name: str) -> bool:
        return self.outcome.get(name, ("",))[0] == "passed" and self.ms(name) is not None

    def state(self, name: str) -> str | None:
        """None when the row has a figure; otherwise what to print instead."""
        kind, message = self.outcome.get(name, (None, ""))
        if kind is None:
            return f"did not run ({stage_end(self.folder, 'benchmarks')} before it)"
        if kind == "failed":
            return "FAILED" + (f" ({message.splitlines()[0][:120]})" if message else "")
        if kind == "skipped":
            return f"skipped ({message.removeprefix('Skipped: ')})"
        if self.dry:
            return "no GPU (dry run: the body passed on the stand-in GPU)"
        return None if self.ms(name) is not None else "no figure in bench.json"

    def failed(self, expected: list[str]) -> list[str]:
        bad = []
        for name in expected:
            kind = self.outcome.get(name, (None,))[0]
            optional = any(name == STEP_FED.format(f) for f in OPTIONAL_FEEDS)
            if kind == "failed" or kind is None or (kind == "skipped" and not optional):
                bad.append(name)
        return bad


def _poisson(b: Bench) -> list[str]:
    lines = ["", "## Poisson solve: 64 bottle-preset problems at 224 px (mean of the rounds), parity with OpenCV"]
    ref = b.state(OPENCV) if not b.dry else "not run in a dry run"
    lines.append(f"OpenCV loop (CPU, one core): {ref or f'{b.ms(OPENCV):.2f} ms'}")
    for s in SOLVERS:
        name = SOLVE.format(s)
        info = b.info(name)
        parity = (f"; max difference {info['max_diff']} grey level(s), {100 * info['equal_share']:.3f} % of pixels "
                  "equal to OpenCV's") if "max_diff" in info else ""
        lines.append(f"CUDA {s}: {b.state(name) or f'{b.ms(name):.2f} ms'}{parity}")
    measured = {s: b.ms(SOLVE.format(s)) for s in SOLVERS if b.measured(SOLVE.format(s))}
    if measured:
        lines.append(f"fastest solve on this GPU: {min(measured, key=measured.get)} "
                     "(--solver auto takes AUTO['cuda'] in nsa_fast/blend/pick.py)")
    return lines


def _rates(b: Bench, title: str, pattern: str, extra) -> list[str]:
    lines = ["", title]
    for s in SOLVERS:
        name = pattern.format(s)
        state = b.state(name)
        lines.append(f"solver {s}: " + (state or f"{b.ms(name):.2f} ms, {BATCH / b.ms(name) * 1e3:.0f} samples/s"
                                                   + extra(b.info(name))))
    return lines


def _training(b: Bench) -> list[str]:
    lines = ["", "## Training step, batch 64 at 224 px (bf16 from sm_80 on), mean of the rounds"]
    fixed = b.ms(STEP_FIXED) if b.measured(STEP_FIXED) else None
    lines.append(f"on a fixed batch (network only): {b.state(STEP_FIXED) or f'{fixed:.2f} ms'}")
    for feed in FEEDS:
        name = STEP_FED.format(feed)
        state = b.state(name)
        label = f"fed by --synth {feed}" + (f" ({b.info(name)['workers']} workers)" if "workers" in b.info(name) else "")
        if state:
            lines.append(f"{label}: {state}")
            continue
        fed = b.ms(name)
        share = ""
        if fixed is not None:
            frac = max(0.0, 1.0 - fixed / fed)
            share = f"; data path {100 * frac:.1f} % of the step"
            if feed == "device":
                share += " (target < 10 %: " + ("met)" if frac < DATA_PATH_LIMIT else "NOT met)")
        lines.append(f"{label}: {fed:.2f} ms{share}")
    return lines


def _counts(folder: Path, dry: bool) -> tuple[list[str], bool]:
    counts = _json(folder / "counts.json")
    title = "## Copies, kernel launches and synchronisations of one synthetic batch (--synth device)"
    if not counts:
        return ["", title, f"FAILED: no counts.json ({stage_end(folder, 'counts')}; see counts.txt)"], False
    lines = ["", title, f"counted on: {counts['counted_on']}; batch {counts['batch']} at {counts['size']} px"
             + (" (a GPU counts 64)" if dry else ""),
             "solver   kernels  of them CuPy  h2d  d2h  syncs  float64"]
    for s in SOLVERS:
        c = counts["solvers"].get(s)
        lines.append(f"{s:8}{c['kernels']:>8}{c['cupy']:>14}{c['h2d']:>5}{c['d2h']:>5}{c['syncs']:>7}{c['float64']:>9}"
                     if c else f"{s:8} missing")
    t = counts.get("train", {})
    lines.append(f"training: {t.get('syncs')} synchronisations in {t.get('steps')} steps ({t.get('note')})")
    broken = unmet(counts)
    lines.append("efficiency rules (tests/test_device_efficiency.py): "
                 + ("NOT met: " + "; ".join(broken) if broken else "met"))
    return lines, all(s in counts["solvers"] for s in SOLVERS) and not broken


def _epochs(folder: Path, dry: bool) -> tuple[list[str], bool]:
    e = _json(folder / "epochs.json")
    title = "## Whole epochs: python -m nsa_fast.train --preset bottle, 209 images of 256 px, batch 64"
    if not e:
        return ["", title, f"FAILED: no epochs.json ({stage_end(folder, 'epochs')}; see epochs.txt)"], False
    lines = ["", title]
    if dry:
        lines.append(f"dry run: {e['images']} images of {e['size']} px, batch {e['batch']}, {e['epochs']} epoch(s) "
                     "on the CPU; no GPU figure")
    ok = True
    for r in e["runs"]:
        if r["returncode"]:
            ok = False
            lines.append(f"--synth {r['synth']}: FAILED (exit code {r['returncode']}): {r.get('error', [''])[0]}")
        elif dry:
            lines.append(f"--synth {r['synth']}: no GPU (dry run: the run passed, {r['wall_s']} s)")
        else:
            lines.append(f"--synth {r['synth']}: epochs {r['epoch_s']} s (the first pays start-up); steady "
                         f"{r['steady_epoch_s']} s an epoch; 320 epochs ~ {r['projected_320_epochs_min']} min")
    return lines, ok


def summarize(folder: Path, dry: bool = False, no_gpu: bool = False) -> tuple[str, bool]:
    """The summary text, and whether the check passed."""
    head = ("dry run on the CPU: the stages through the stand-ins" if dry else
            "no GPU: nothing measured" if no_gpu else "on a GPU")
    lines = [f"# nsa_fast GPU check ({head})", ""]
    env = folder / "env.txt"
    lines += ["## Environment", env.read_text().strip() if env.is_file() else "(no env.txt)"]
    if no_gpu:
        lines += ["", "no CUDA GPU is visible: nothing was measured (bash bench/gpu_check.sh --dry-run walks the "
                      "stages on the CPU)", "", "check FAILED: no GPU"]
        return "\n".join(lines) + "\n", False
    counts, failed = test_counts(folder / "tests.xml")
    lines += ["", "## CUDA tests (pytest -m cuda tests/)",
              f"passed {counts['passed']}, failed {counts['failed']}, skipped {counts['skipped']}"]
    lines += [f"FAILED {name}" for name in failed]
    if dry and counts["passed"] == 0 and not failed:
        lines.append("no GPU: every CUDA test skipped (dry run)")
    tests_ok = not failed and (dry or counts["passed"] > 0)
    b = Bench(folder, dry)
    expected = ([SOLVE.format(s) for s in SOLVERS] + [EXECUTOR.format(s) for s in SOLVERS] +
                [PIPELINE.format(s) for s in SOLVERS] + [STEP_FIXED] + [STEP_FED.format(f) for f in FEEDS] +
                ([] if dry else [OPENCV]))
    lines += _poisson(b)
    lines += _rates(b, "## Synthetic batch of 64 (bottle, logistic labels): the executor, plans and object masks given",
                    EXECUTOR, lambda i: f"; labels equal to OpenCV's on {100 * i['labels_equal_share']:.3f} % of "
                                        "pixels" if "labels_equal_share" in i else "")
    lines += _rates(b, "## Device pipeline (--synth device): a batch of 64 at 224 px from the image cache",
                    PIPELINE, lambda i: "")
    lines += _training(b)
    bad_bench = b.failed(expected)
    if bad_bench:
        lines += ["", "## Benchmarks that failed or did not run"] + [f"FAILED {n}" for n in bad_bench]
    count_lines, counts_ok = _counts(folder, dry)
    epoch_lines, epochs_ok = _epochs(folder, dry)
    lines += count_lines + epoch_lines
    doctor = folder / "doctor.txt"
    lines += ["", "## doctor", doctor.read_text().strip() if doctor.is_file() else "(doctor did not run)"]
    code = _doctor_code(doctor)
    doctor_ok = code in ((0, 1) if dry else (0,))
    ok = tests_ok and not bad_bench and counts_ok and epochs_ok and doctor_ok
    lines += ["", f"{'dry run' if dry else 'check'} {'PASSED' if ok else 'FAILED'}: "
                  f"CUDA tests {'ok' if tests_ok else 'not ok'}, "
                  f"benchmarks {'ok' if not bad_bench else f'{len(bad_bench)} failed or missing'}, "
                  f"counts {'ok' if counts_ok else 'FAILED'}, epochs {'ok' if epochs_ok else 'FAILED'}, "
                  f"doctor exit code {code}"]
    return "\n".join(lines) + "\n", ok


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = [a for a in argv if a.startswith("--")]
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1 or not Path(args[0]).is_dir() or not set(flags) <= {"--dry-run", "--no-gpu"}:
        print("error: expected one folder, the one gpu_check.sh wrote its stages to (env.txt, tests.xml, "
              f"bench.xml, counts.json, ...), and optionally --dry-run or --no-gpu; got {argv!r}", file=sys.stderr)
        return 2
    text, ok = summarize(Path(args[0]), dry="--dry-run" in flags, no_gpu="--no-gpu" in flags)
    (Path(args[0]) / "summary.txt").write_text(text)
    print(text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
