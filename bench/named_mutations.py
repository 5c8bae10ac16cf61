"""Plausible bugs that once passed the whole suite, introduced one at a time in a scratch copy
of HEAD; the tests that must catch each are run and their failures listed (CAUGHT or MISSED).

    python bench/named_mutations.py            # all of them (about 10 minutes on 2 cores)
    python bench/named_mutations.py DDP seed   # those whose name contains a word

Each entry: name, file, the exact text (it must occur once), its mutation, the tests to run. The
tests must pass on HEAD first; a mutation counts as CAUGHT only when they then fail (pytest exit
code 1, failures listed) and the mutated module still imports. It tests HEAD, not uncommitted
changes. Exit code 0 only when every chosen mutation is caught. Not collected by pytest.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WT: Path  # the scratch copy of HEAD, made by main()
M = [
 ("seed + epoch + index", "nsa_fast/sampler.py", "np.random.SeedSequence([seed, epoch, index])", "np.random.SeedSequence(seed + epoch + index)", ["tests/test_randomness.py"]),
 ("device rotation sign flipped", "nsa_fast/transforms.py", "steps = [rotation_steps(a.angle, shape) for a in augs]", "steps = [rotation_steps(-a.angle, shape) for a in augs]", ["tests/test_pipelines.py"]),
 ("resize scale N(1, 0.4)", "nsa_fast/sampler.py", "scale = float(rng.normal(1.0, 0.5))", "scale = float(rng.normal(1.0, 0.4))", ["tests/test_sampler.py"]),
 ("factor U(0.05, 0.9)", "nsa_fast/sampler.py", "factor = float(rng.uniform(0.05, 0.95))", "factor = float(rng.uniform(0.05, 0.9))", ["tests/test_sampler.py"]),
 ("50-pixel rule on h*w", "nsa_fast/sampler.py", "if (h - 2) * (w - 2) < preset.min_mask_pixels:", "if h * w < preset.min_mask_pixels:", ["tests/test_sampler.py"]),
 ("skip reasons swapped", "nsa_fast/sampler.py", 'stats.skipped["small_mask"] += 1', 'stats.skipped["thin_mask"] += 1', ["tests/test_sampler.py"]),
 ("BCE -> MSE on the sigmoid", "nsa_fast/labels.py", "return F.binary_cross_entropy_with_logits(logits.float(), labels)", "return F.mse_loss(F.sigmoid(logits.float()), labels)", ["tests/test_recipe.py", "tests/test_labels.py"]),
 ("cosine floor 1e-6 -> 0", "nsa_fast/train.py", "    lr_min: float = 1e-6", "    lr_min: float = 0.0", ["tests/test_recipe.py"]),
 ("epoch shuffle constant", "nsa_fast/pipelines.py", "np.random.default_rng([seed, epoch, 0x5EED])", "np.random.default_rng([seed, epoch, 0x5EEE])", ["tests/test_randomness.py"]),
 ("screw logistic k 1.0 -> 0.9", "nsa_fast/presets.py", 'n_max=4, logistic=(1.0, 3.0)', 'n_max=4, logistic=(0.9, 3.0)', ["tests/test_presets.py"]),
 ("label tol: >= instead of >", "nsa_fast/labels.py", "on = ((dsum > lab.tol * C) & region).astype(np.uint8)", "on = ((dsum >= lab.tol * C) & region).astype(np.uint8)", ["tests/test_labels.py"]),
 ("disk median radius 5 -> 4", "nsa_fast/labels.py", "DISK_RADIUS = 5 ", "DISK_RADIUS = 4 ", ["tests/test_labels.py"]),
 ("binary median 5 -> 3", "nsa_fast/labels.py", "BINARY_MEDIAN = 5 ", "BINARY_MEDIAN = 3 ", ["tests/test_labels.py"]),
 ("clone centre of the fast path: odd widths left", "nsa_fast/blend/ops.py", "return x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2", "return x0 + (x1 - x0) // 2, y0 + (y1 - y0) // 2", ["tests/test_executor.py", "tests/test_blend_ops.py"]),
 ("Poisson mask frame not zeroed", "nsa_fast/blend/ops.py", "inner = (r >= 1) & (r < h - 1) & (c >= 1) & (c < w - 1)", "inner = (r >= 0) & (r < h) & (c >= 0) & (c < w)", ["tests/test_executor.py", "tests/test_blend_ops.py"]),
 ("batched labels: one factor row for every sample", "nsa_fast/labels.py", "    if table.shape[0] > 1:  # one row of the table per sample", "    if False:  # one row of the table per sample", ["tests/test_batched.py", "tests/test_labels.py"]),
 ("batched labels: logistic table in float32", "nsa_fast/labels.py", "    b = np.array([[0.0], [1.0]])", "    b = np.array([[0.0], [1.0]], np.float32)", ["tests/test_labels.py", "tests/test_batched.py"]),
 ("float64 object masks on the device", "nsa_fast/objects.py", "    s = images.sum(-1, dtype=torch.int32)  # integers only: no float64 on a GPU", "    s = images.to(torch.float64).sum(-1)", ["tests/test_device_efficiency.py"]),
 ("direct solve in float64 off the CPU", "nsa_fast/blend/solvers.py", '    return torch.float64 if device.type == "cuda" and tf32_products() else torch.float32', '    return torch.float64 if device.type != "cpu" else torch.float32', ["tests/test_device_efficiency.py", "tests/test_solvers.py"]),
 ("a host read in the batch path", "nsa_fast/blend/batched.py", "        cur = dst.clone()\n", "        cur = dst.clone()\n        assert cur.sum().item() >= 0\n", ["tests/test_device_efficiency.py"]),
 ("SOR sweeps launched one by one", "nsa_fast/blend/cuda.py", "        _launch(f, (B * C,), (BLOCK_THREADS,),\n                args + (np.int32(C), np.int32(R), np.int32(K), np.int32(it), np.int32(flag)), shared_mem=shared)\n    return u\n\n\ndef disk_median_cuda", "        for _ in range(it):\n            _launch(f, (B * C,), (BLOCK_THREADS,),\n                    args + (np.int32(C), np.int32(R), np.int32(K), np.int32(1), np.int32(flag)), shared_mem=shared)\n    return u\n\n\ndef disk_median_cuda", ["tests/test_device_efficiency.py"]),
 ("CuPy views taken off torch's stream", "nsa_fast/blend/cuda.py", '    with _on_torch_stream(rhs.device):  # the views too: DLPack orders them against CuPy\'s current stream\n        args = (_as_cupy(u, torch.float32, "u"), _as_cupy(rhs_c, torch.float32, "rhs"),\n                _as_cupy(n.dev, torch.int32, "sizes"), _as_cupy(n.omega, torch.float32, "omega"))\n', '    args = (_as_cupy(u, torch.float32, "u"), _as_cupy(rhs_c, torch.float32, "rhs"),\n            _as_cupy(n.dev, torch.int32, "sizes"), _as_cupy(n.omega, torch.float32, "omega"))\n    with _on_torch_stream(rhs.device):\n', ["tests/test_kernels.py", "tests/test_standin_cupy.py", "tests/test_device_efficiency.py"]),
 ("DDP: the trainer does not wrap its model", "nsa_fast/train.py", "    model = distribute(model, device, local, world)", "    pass", ["tests/test_train.py::test_torchrun_two_processes_on_the_cpu"]),
 ("DDP: distribute never wraps (ranks train apart)", "nsa_fast/devices.py", "    if world == 1:\n        return model", "    if True:\n        return model", ["tests/test_train.py::test_ddp_ranks_train_disjoint_shards_with_synchronised_gradients"]),
]
def pytest(tests, env):
    r = subprocess.run([PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "slow or not slow", *tests],
                       cwd=WT, env=env, capture_output=True, text=True, timeout=900)
    failed = [line.split(" - ")[0].split(" ", 1)[1] for line in r.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return r, failed


def main() -> int:
    global WT
    only = sys.argv[1:]
    chosen = [m for m in M if not only or any(o.lower() in m[0].lower() for o in only)]
    if not chosen:
        print(f"no mutation's name contains any of {only}; names: {[m[0] for m in M]}", file=sys.stderr)
        return 2
    WT = Path(tempfile.mkdtemp(prefix="nsa_named_")) / "wt"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--force", "--detach", str(WT), "HEAD"],
                   check=True, capture_output=True)
    # subprocesses (torchrun, CLI runs) must import the mutated copy, not an editable install
    env = {**os.environ, "PYTHONPATH": str(WT)}
    bad = 0
    try:
        for name, f, old, new, tests in chosen:
            p = WT / f
            src = p.read_text()
            if src.count(old) != 1:
                print(f"ERROR  | {name} | the text to mutate occurs {src.count(old)} times in {f}", flush=True)
                bad += 1
                continue
            base, _ = pytest(tests, env)
            if base.returncode != 0:  # the tests must pass before the bug goes in
                print(f"ERROR  | {name} | the tests fail without the mutation: {base.stdout.splitlines()[-1:]}")
                bad += 1
                continue
            p.write_text(src.replace(old, new, 1))
            try:
                module = f[:-3].replace("/", ".")
                imports = subprocess.run([PY, "-c", f"import {module}"], cwd=WT, env=env, capture_output=True)
                r, failed = pytest(tests, env)
            finally:
                p.write_text(src)
            # caught: tests ran and failed (exit code 1, failures listed) while the module still imports
            caught = imports.returncode == 0 and r.returncode == 1 and failed
            verdict = "CAUGHT" if caught else "MISSED" if r.returncode == 0 else "ERROR "
            bad += not caught
            print(f"{verdict} | {name} | {f}: {old.strip()[:60]} -> {new.strip()[:60]} | "
                  f"{', '.join(failed) or r.stdout.splitlines()[-1:]}", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(WT)], capture_output=True)
        os.rmdir(WT.parent)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
