"""bench/gpu_check.sh, the prepared run for a lent GPU: its arguments, its dry run on the CPU, and
the summary it writes from a GPU's figures.

The dry run walks every stage through the stand-ins: the CUDA benchmarks' own bodies run here on
the stand-in GPU (benchmarking disabled), so a benchmark that only a GPU times cannot rot unseen.
"""
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from device_counts import count_events  # noqa: E402
from gpu_summary import EXECUTOR, FEEDS, PIPELINE, SOLVE, SOLVERS, STEP_FED, STEP_FIXED, outcomes, summarize  # noqa: E402

BENCH_BODIES = ([SOLVE.format(s) for s in SOLVERS] + [EXECUTOR.format(s) for s in SOLVERS] +
                [PIPELINE.format(s) for s in SOLVERS] + [STEP_FIXED] + [STEP_FED.format(f) for f in FEEDS])


def check(*args, **kw):
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          **kw)


def test_bad_arguments_get_one_error_line_and_exit_2(tmp_path):
    for args in (["--bogus"], ["--out"], ["--python", "no-such-python"], ["--out", "/proc/nsa/x"]):
        run = check(*args)
        assert run.returncode == 2, args
        assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    run = check("--help")
    assert run.returncode == 0 and "--out DIR" in run.stdout and "--dry-run" in run.stdout
    assert "Exit code: 0 when every stage passed" in run.stdout  # the whole header, not a cut of it


def test_the_header_names_every_package_the_stages_import():
    """What the check needs, as its header says: every dependency of the package (pyproject.toml)
    and the test tools; and a module that fails to import is an error in the report, not the end
    of the test stage."""
    import tomllib

    header = (REPO / "bench" / "gpu_check.sh").read_text().split("set -uo pipefail")[0]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d)[0] for d in deps} | {"pytest", "pytest-benchmark"}
    said = {"opencv-python-headless": "opencv-python(-headless)"}
    missing = [n for n in names if said.get(n, n) not in header]
    assert not missing, f"gpu_check.sh's header does not name {missing}"
    assert "--continue-on-collection-errors" in (REPO / "bench" / "gpu_check.sh").read_text()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    run = check("--dry-run", "--out", str(out), "--python", sys.executable, timeout=1200)
    stages = out / "unpacked"
    with tarfile.open(out / "stages.tar.gz") as tar:
        tar.extractall(stages, filter="data")
    return run, out, stages / "stages"


def test_the_dry_run_walks_every_stage(dry_run):
    run, out, stages = dry_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["stages.tar.gz", "summary.txt", "unpacked"]
    assert {p.name for p in stages.iterdir()} == {"env.txt", "tests.xml", "tests.txt", "bench.xml", "bench.txt",
                                                  "counts.json", "counts.txt", "epochs.json", "epochs.txt",
                                                  "doctor.txt", "cuda_tests.rc", "benchmarks.rc", "counts.rc",
                                                  "epochs.rc"}
    assert all((stages / f"{stage}.rc").read_text().strip() == "0" for stage in ("benchmarks", "counts", "epochs"))
    text = (out / "summary.txt").read_text()
    assert text.splitlines()[-1].startswith("dry run PASSED"), text[-1500:]


def test_the_gpu_benchmarks_bodies_pass_on_the_stand_in(dry_run):
    """The same functions a GPU times, run once on the stand-in GPU: none may fail or go missing."""
    _, _, stages = dry_run
    found = outcomes(stages / "bench.xml")
    for name in BENCH_BODIES:
        kind, message = found[name]
        if name == STEP_FED.format("dali"):
            assert kind == "skipped" and ("stand-in" in message or "DALI" in message), message
        else:
            assert kind == "passed", (name, kind, message)
    assert sorted(found) == sorted(BENCH_BODIES)


def test_the_dry_run_summary_has_every_row(dry_run):
    _, out, _ = dry_run
    text = (out / "summary.txt").read_text()
    for solver in SOLVERS:
        assert f"CUDA {solver}: no GPU (dry run: the body passed on the stand-in GPU)" in text
        assert f"solver {solver}: no GPU (dry run" in text
        assert re.search(rf"^{solver} +\d+ +[14] +2 +1 +1 +0$", text, re.M), solver  # the counts table
    for feed in ("device", "workers"):
        assert f"fed by --synth {feed}: no GPU (dry run" in text
        assert f"--synth {feed}: no GPU (dry run: the run passed" in text
    assert "fed by --synth dali: skipped (" in text
    assert "on a fixed batch (network only): no GPU (dry run" in text
    assert "training: 4 synchronisations in 3 steps" in text
    assert "no GPU: every CUDA test skipped (dry run)" in text and "doctor exit code 1" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_without_a_gpu_and_without_dry_run_it_stops_at_once(tmp_path):
    run = check("--out", str(tmp_path / "gc"), "--python", sys.executable, timeout=120)
    assert run.returncode == 1 and run.stderr.startswith("error: no CUDA GPU is visible")
    assert "--dry-run" in run.stderr
    text = (tmp_path / "gc" / "summary.txt").read_text()
    assert "no CUDA GPU is visible: nothing was measured" in text and text.rstrip().endswith("check FAILED: no GPU")


# --- the summary of a GPU's figures ------------------------------------------------------------


def _bench(tmp_path, means, info=None):
    rows = [{"name": n, "stats": {"mean": m}, "extra_info": (info or {}).get(n, {})} for n, m in means.items()]
    (tmp_path / "bench.json").write_text(json.dumps({"benchmarks": rows}))


def _junit(tmp_path, name, passing=(), failing=(), skipped=()):
    cases = "".join(f'<testcase classname="x" name="{n}"/>' for n in passing)
    cases += "".join(f'<testcase classname="x" name="{n}"><failure message="boom"/></testcase>' for n in failing)
    cases += "".join(f'<testcase classname="x" name="{n}"><skipped message="{m}"/></testcase>' for n, m in skipped)
    (tmp_path / name).write_text(f'<testsuites><testsuite>{cases}</testsuite></testsuites>')


def _gpu_run(tmp_path, *, bench_fail=(), dali="skipped", doctor=0, counts=True, epochs=True, broken=(), rc=None):
    for stage, code in (rc or {}).items():
        (tmp_path / f"{stage}.rc").write_text(code + "\n")
    names = BENCH_BODIES + ["test_solve_opencv_loop"]
    means = {n: 0.01 for n in names}
    means.update({SOLVE.format("dst"): 0.004, SOLVE.format("sor"): 0.002, SOLVE.format("jacobi"): 0.05,
                  STEP_FIXED: 0.100, STEP_FED.format("device"): 0.104, STEP_FED.format("workers"): 0.200,
                  EXECUTOR.format("dst"): 0.016, PIPELINE.format("sor"): 0.032})
    info = {SOLVE.format(s): {"max_diff": 1, "equal_share": 0.9999} for s in SOLVERS}
    info[STEP_FED.format("workers")] = {"workers": 8}
    info[EXECUTOR.format("dst")] = {"labels_equal_share": 0.99999}
    skipped = [(STEP_FED.format("dali"), "Skipped: --synth dali needs DALI")] if dali == "skipped" else []
    if dali == "skipped":
        means.pop(STEP_FED.format("dali"))
    _bench(tmp_path, means, info)
    passing = [n for n in names if n not in bench_fail and (dali != "skipped" or n != STEP_FED.format("dali"))]
    _junit(tmp_path, "bench.xml", passing=passing, failing=bench_fail, skipped=skipped)
    _junit(tmp_path, "tests.xml", passing=["test_ok"])
    (tmp_path / "doctor.txt").write_text(f"[  ok] GPU: NVIDIA H100\ndoctor exit code {doctor}\n")
    if counts:
        rows = {s: dict(kernels=700, cupy=1 if s == "dst" else 4, h2d=2, d2h=1, syncs=1, float64=0) for s in SOLVERS}
        for solver, field, value in broken:
            rows[solver][field] = value
        (tmp_path / "counts.json").write_text(json.dumps(dict(
            counted_on="NVIDIA H100 80GB HBM3", batch=64, size=224, solvers=rows,
            train=dict(steps=3, syncs=6, note="all threads"))))
    if epochs:
        runs = [dict(synth=s, returncode=0, wall_s=20, epoch_s=[3.0, 1.0, 1.2], steady_epoch_s=1.1,
                     projected_320_epochs_min=5.9) for s in ("device", "workers")]
        (tmp_path / "epochs.json").write_text(json.dumps(dict(images=209, size=256, batch=64, epochs=3,
                                                              dry_run=False, runs=runs)))
    (tmp_path / "env.txt").write_text("NVIDIA H100 80GB HBM3, 9.0\n")


def test_the_summary_of_a_passing_gpu_run(tmp_path):
    _gpu_run(tmp_path)
    text, ok = summarize(tmp_path)
    assert ok and text.rstrip().endswith("doctor exit code 0") and "check PASSED" in text
    assert "CUDA sor: 2.00 ms; max difference 1 grey level(s), 99.990 % of pixels equal to OpenCV's" in text
    assert "fastest solve on this GPU: sor" in text
    assert "fed by --synth device: 104.00 ms; data path 3.8 % of the step (target < 10 %: met)" in text
    assert "fed by --synth workers (8 workers): 200.00 ms; data path 50.0 % of the step" in text
    assert "fed by --synth dali: skipped (--synth dali needs DALI)" in text
    assert "solver dst: 16.00 ms, 4000 samples/s; labels equal to OpenCV's on 99.999 % of pixels" in text
    assert "solver sor: 32.00 ms, 2000 samples/s" in text
    assert "counted on: NVIDIA H100 80GB HBM3; batch 64 at 224 px" in text
    assert re.search(r"^jacobi +700 +4 +2 +1 +1 +0$", text, re.M)
    assert "efficiency rules (tests/test_device_efficiency.py): met" in text
    assert "--synth device: epochs [3.0, 1.0, 1.2] s (the first pays start-up); steady 1.1 s an epoch; " \
           "320 epochs ~ 5.9 min" in text


@pytest.mark.parametrize("case,why", [
    (dict(bench_fail=(EXECUTOR.format("sor"),)), "benchmarks 1 failed or missing"),
    (dict(bench_fail=(STEP_FED.format("device"),)), "benchmarks 1 failed or missing"),
    (dict(doctor=2), "doctor exit code 2"),
    (dict(counts=False), "counts FAILED"),
    (dict(counts=False, rc={"counts": "124"}), "counts FAILED"),
    (dict(epochs=False), "epochs FAILED"),
    (dict(broken=[("sor", "float64", 2)]), "counts FAILED"),
    (dict(broken=[("dst", "cupy", 2)]), "counts FAILED"),
    (dict(broken=[("jacobi", "cupy", 60)]), "counts FAILED"),
    (dict(broken=[("sor", "d2h", 2)]), "counts FAILED"),
])
def test_a_failing_stage_fails_the_check(tmp_path, case, why):
    _gpu_run(tmp_path, **case)
    text, ok = summarize(tmp_path)
    assert not ok and why in text.splitlines()[-1], text.splitlines()[-1]
    for name in case.get("bench_fail", ()):
        assert f"FAILED {name}" in text
    if case.get("rc"):
        assert "FAILED: no counts.json (the counts stage was killed at its time limit; see counts.txt)" in text
    for solver, field, value in case.get("broken", ()):
        assert f"efficiency rules (tests/test_device_efficiency.py): NOT met: {solver}: {value} " in text


def test_a_benchmark_that_did_not_run_or_was_skipped_without_reason_fails_the_check(tmp_path):
    _gpu_run(tmp_path)
    found = (tmp_path / "bench.xml").read_text()
    (tmp_path / "bench.xml").write_text(found.replace(f'name="{PIPELINE.format("jacobi")}"/>', 'name="gone"/>'))
    text, ok = summarize(tmp_path)
    assert not ok and "solver jacobi: did not run (the benchmarks stage left no exit code before it)" in text
    (tmp_path / "benchmarks.rc").write_text("124\n")
    assert "solver jacobi: did not run (the benchmarks stage was killed at its time limit before it)" in \
        summarize(tmp_path)[0]
    _gpu_run(tmp_path, dali="passed")
    text, ok = summarize(tmp_path)
    assert ok and "fed by --synth dali: 10.00 ms; data path 0.0 % of the step" in text


def test_a_failing_cuda_test_or_none_passing_fails_the_check(tmp_path):
    _gpu_run(tmp_path)
    _junit(tmp_path, "tests.xml", passing=["test_ok"], failing=["test_bad"])
    text, ok = summarize(tmp_path)
    assert not ok and "FAILED test_bad" in text and "passed 1, failed 1, skipped 0" in text
    _junit(tmp_path, "tests.xml", skipped=[("test_gpu", "needs a CUDA device")])
    assert not summarize(tmp_path)[1]  # on a GPU, CUDA tests that all skip verify nothing


def test_profiler_events_are_counted_by_kind():
    events = [("Memcpy HtoD (Pinned -> Device)", True), ("Memcpy DtoH (Device -> Pageable)", True),
              ("Memset (Device)", True), ("Memcpy DtoD (Device -> Device)", True),
              ("void at::native::vectorized_elementwise_kernel<4, AddFunctor<float>>", True),
              ("void at::native::reduce_kernel<512, 1, ReduceOp<double, MeanOps<double, double>>>", True),
              ("sor_block", True), ("median_disk", True),
              ("cudaStreamSynchronize", False), ("cudaLaunchKernel", False), ("aten::add", False),
              ("cudaMemcpyAsync", False), ("cudaDeviceSynchronize", False)]
    assert count_events(events) == dict(h2d=1, d2h=1, syncs=2, kernels=4, cupy=2, float64=1)
