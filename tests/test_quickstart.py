"""The README's quick start is exactly two commands, and they do what it says."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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


def test_the_main_job_trains_and_prints_metrics(tmp_path):
    install_and_train, _ = quick_start()
    job = shlex.split(install_and_train.split("&&")[-1])
    assert job[0] == ".venv/bin/python"
    env = {**os.environ, "NSA_FAST_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, *job[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads(run.stdout[run.stdout.index("{"):])
    assert metrics["category"] == "demo" and metrics["epoch"] == 40
    for key in ("image_auroc", "pixel_auroc", "au_pro_0.3"):
        assert 0.0 <= metrics[key] <= 1.0
    out = tmp_path / "runs" / "demo-nsa-logistic-s0"
    assert (out / "last.pt").is_file() and (out / "eval" / "examples.png").is_file()
    # the model learnt something from synthetic anomalies alone: real defects score above chance
    assert metrics["pixel_auroc"] > 0.6
