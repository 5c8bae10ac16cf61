"""bench/gpu_check.sh, the prepared run for a lent GPU: its arguments and its summary, on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from gpu_summary import summarize  # noqa: E402


def check(*args, **kw):
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          **kw)


def test_bad_arguments_get_one_error_line_and_exit_2(tmp_path):
    for args in (["--bogus"], ["--out"], ["--python", "no-such-python"], ["--out", "/proc/nsa/x"]):
        run = check(*args)
        assert run.returncode == 2, args
        assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    run = check("--help")
    assert run.returncode == 0 and "--out DIR" in run.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only report")
def test_on_a_cpu_machine_every_gpu_row_says_no_cuda(tmp_path):
    run = check("--out", str(tmp_path / "gc"), "--python", sys.executable, timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]  # nothing on a GPU was verified
    text = (tmp_path / "gc" / "summary.txt").read_text()
    assert "no CUDA test ran" in text
    for row in ("CUDA dst: no CUDA", "CUDA sor: no CUDA", "CUDA jacobi: no CUDA", "solver sor: no CUDA",
                "fed by --gpu-blend: no CUDA", "on a fixed batch (network only): no CUDA"):
        assert row in text, row
    assert "OpenCV loop (CPU, one core): " in text and "doctor exit code 1" in text
    assert {p.name for p in (tmp_path / "gc").iterdir()} == {"env.txt", "tests.xml", "tests.txt", "bench.json",
                                                            "bench.xml", "doctor.txt", "summary.txt"}
    assert "check FAILED" in text


def _bench(tmp_path, means):
    rows = [{"name": n, "stats": {"mean": m}, "extra_info": {"workers": 8} if "cpu_workers" in n else {}}
            for n, m in means.items()]
    (tmp_path / "bench.json").write_text(json.dumps({"benchmarks": rows}))


def _junit(tmp_path, failing=None, name="tests.xml", passing="test_ok"):
    cases = f'<testcase classname="tests.test_x" name="{passing}"/>'
    if failing:
        cases += f'<testcase classname="tests.test_x" name="{failing}"><failure message="boom"/></testcase>'
    (tmp_path / name).write_text(f'<testsuites><testsuite>{cases}</testsuite></testsuites>')


def _doctor(tmp_path, code):
    (tmp_path / "doctor.txt").write_text(f"[  ok] GPU: NVIDIA H200\ndoctor exit code {code}\n")


def test_summary_computes_the_data_path_share_and_picks_the_fastest_solver(tmp_path):
    _bench(tmp_path, {"test_solve_batched_cuda[dst]": 0.004, "test_solve_batched_cuda[sor]": 0.002,
                      "test_solve_batched_cuda[jacobi]": 0.05, "test_train_step_cuda": 0.100,
                      "test_train_step_cuda_fed_by[gpu_blend]": 0.104,
                      "test_train_step_cuda_fed_by[cpu_workers]": 0.200,
                      "test_batch_batched_executor[cuda-dst]": 0.016})
    _junit(tmp_path)
    _doctor(tmp_path, 0)
    text, ok = summarize(tmp_path)
    assert ok and "check PASSED" in text
    assert "CUDA sor: 2.00 ms" in text and "fastest on this GPU: sor" in text
    assert "fed by --gpu-blend: 104.00 ms; data path 3.8 % of the step (target < 10 %: met)" in text
    assert "fed by CPU workers (8): 200.00 ms; data path 50.0 % of the step" in text
    assert "solver dst: 16.00 ms, 4000 samples/s" in text and "solver sor: no CUDA" in text


def test_a_failing_cuda_test_fails_the_check(tmp_path):
    _bench(tmp_path, {"test_train_step_cuda": 0.1, "test_train_step_cuda_fed_by[gpu_blend]": 0.2})
    _junit(tmp_path, failing="test_bad")
    text, ok = summarize(tmp_path)
    assert not ok and "FAILED tests.test_x::test_bad" in text and "passed 1, failed 1" in text
    assert "data path 50.0 % of the step (target < 10 %: NOT met)" in text


def test_a_failing_benchmark_or_doctor_fails_the_check(tmp_path):
    _bench(tmp_path, {"test_solve_batched_cuda[dst]": 0.004, "test_batch_batched_executor[cuda-sor]": 0.02})
    _junit(tmp_path)
    _junit(tmp_path, failing="test_batch_batched_executor[cuda-sor]", name="bench.xml")
    _doctor(tmp_path, 0)
    text, ok = summarize(tmp_path)
    assert not ok and "solver sor: FAILED (after 20.00 ms)" in text and "benchmarks 1 failed" in text
    _junit(tmp_path, name="bench.xml")
    _doctor(tmp_path, 2)
    text, ok = summarize(tmp_path)
    assert not ok and "doctor exit code 2" in text.splitlines()[-1]
