"""The README's quick start is exactly two commands, and they do what it says."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash block under '## Quick start'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_two_commands_install_train_and_test():
    install_and_train, tests = quick_start()
    assert "pip install torch==2.14.1 torchvision==0.29.1" in install_and_train
    assert "-m nsa_fast.train --data demo" in install_and_train
    assert tests == ".venv/bin/python -m pytest"
    assert "python -m pytest" in (REPO / ".ci" / "run").read_text()  # CI runs the README's tests


def run_main_job(tmp_path, *extra):
    """The README's first command's job, run as a new user would (with ``extra`` arguments)."""
    install_and_train, _ = quick_start()
    job = shlex.split(install_and_train.split("&&")[-1])
    assert job[0] == ".venv/bin/python"
    env = {**os.environ, "NSA_FAST_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, *job[1:], *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / "demo-nsa-logistic-s0"
    return run.stdout, json.loads((out / "eval" / "metrics.json").read_text()), out


def test_the_main_job_trains_and_prints_the_results_table(tmp_path):
    # The README's command with 3 of its 40 epochs: the same steps, files and printed table.
    stdout, metrics, out = run_main_job(tmp_path, "--epochs", "3")
    assert metrics["category"] == "demo" and metrics["epoch"] == 3
    assert [line.split(":")[0] for line in stdout.splitlines() if line.startswith("epoch ")] == \
        ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert f"image AUROC  {100 * metrics['image_auroc']:5.1f} %" in stdout
    assert f"pixel AUROC  {100 * metrics['pixel_auroc']:5.1f} %" in stdout
    for name in ("last.pt", "log.csv", "grid_epoch0003.png", "eval/examples.png", "eval/roc.png", "eval/pro.png",
                 "eval/scores.csv"):
        assert (out / name).is_file(), name
        assert str((out / name).relative_to(tmp_path)) in stdout or name.startswith("grid"), name


@pytest.mark.slow
def test_the_main_job_learns_to_find_the_demo_defects(tmp_path):
    # The whole README command (40 epochs, a few minutes): real defects score above chance.
    _, metrics, _ = run_main_job(tmp_path)
    assert metrics["epoch"] == 40
    assert metrics["pixel_auroc"] > 0.6
