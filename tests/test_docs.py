"""Every command and code block of README.md and docs/*.md works as written (tests/docs_blocks.py
says how each kind of block is taken)."""
from __future__ import annotations

import importlib
import json
import re

import pytest

from conftest import QUICKSTART_EPOCHS
from docs_blocks import DIRECTIVES, REPO, blocks, commands, doc_files, module_command

FILES = doc_files()
RUN_LANGS = ("bash", "python")


def _ids(paths):
    return [str(p.relative_to(REPO)) for p in paths]


def test_every_block_says_what_it_is():
    for path in FILES:
        for b in blocks(path):
            assert b.lang in (*RUN_LANGS, "text"), f"{b.where}: a block is bash, python or text (output), not {b.lang!r}"
            assert b.kind in DIRECTIVES, f"{b.where}: unknown doc-test directive {b.directive!r}"
            assert b.lang != "python" or b.kind == "run", f"{b.where}: Python blocks run as written"
    quick = [b for b in blocks(REPO / "README.md") if b.kind == "quickstart"]
    assert len(quick) == 1, "README.md has one quick start block"


class _Parsed(Exception):
    pass


def parse_only(module: str, argv: list[str], monkeypatch) -> None:
    """Parse ``argv`` with the module's own parser, stopping before anything runs."""
    from nsa_fast import cli

    real = cli.Parser.parse_args

    def parse(self, args=None, namespace=None):
        real(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(cli.Parser, "parse_args", parse)
    mod = importlib.import_module(module)
    try:
        code = mod.main(argv)
    except _Parsed:
        return
    except SystemExit as exc:
        code = exc.code
    raise AssertionError(f"{module} {argv}: the arguments did not parse (exit code {code})")


PARSE = [b for p in FILES for b in blocks(p) if b.kind == "parse"]


@pytest.mark.parametrize("block", PARSE, ids=[b.where for b in PARSE])
def test_commands_that_need_a_gpu_or_real_data_parse(block, monkeypatch, capsys):
    cmds = commands(block.body)
    assert cmds, f"{block.where}: no command"
    for cmd in cmds:
        found = module_command(cmd.split())
        assert found and found[0].startswith("nsa_fast."), f"{block.where}: {cmd!r} is not an nsa_fast command"
        import shlex

        parse_only(found[0], shlex.split(cmd)[shlex.split(cmd).index("-m") + 2:], monkeypatch)


DOCKER = [b for p in FILES for b in blocks(p) if b.kind == "docker"]


@pytest.mark.parametrize("block", DOCKER, ids=[b.where for b in DOCKER])
def test_docker_commands_match_the_dockerfile(block, monkeypatch):
    import shlex

    dockerfile = (REPO / "Dockerfile").read_text()
    args = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M))
    for cmd in commands(block.body):
        words = shlex.split(cmd)
        if words[:2] == ["docker", "build"]:
            for i, w in enumerate(words):
                if w == "--build-arg":
                    key, value = words[i + 1].split("=", 1)
                    assert key in args, f"{block.where}: no ARG {key} in the Dockerfile"
                    if key == "STACK":
                        assert f"stack-{value}" in stages, f"{block.where}: no stage stack-{value}"
        elif words[:2] == ["docker", "run"]:
            rest = words[2:]
            entry = None
            while rest and rest[0].startswith("-"):
                flag = rest.pop(0)
                if flag in ("-v", "--shm-size", "--gpus", "--entrypoint", "-e", "--name") and "=" not in flag:
                    value = rest.pop(0)
                    entry = value if flag == "--entrypoint" else entry
            image, argv = rest[0], rest[1:]
            assert image.split(":")[0] == "nsa_fast", f"{block.where}: image {image!r}"
            if entry == "python":
                parse_only(argv[1], argv[2:], monkeypatch)
            else:
                assert "ENTRYPOINT" in dockerfile and "nsa_fast.train" in dockerfile
                if argv != ["--help"]:
                    parse_only("nsa_fast.train", argv, monkeypatch)


RUN_FILES = [p for p in FILES if any(b.kind in ("run", "exit") and b.lang in RUN_LANGS for b in blocks(p))]


@pytest.mark.slow  # minutes: a quick start of 2 epochs, then every block in a fresh shell (CI runs -m slow)
@pytest.mark.parametrize("path", RUN_FILES, ids=_ids(RUN_FILES))
def test_blocks_run_as_written_after_the_quick_start(path, reader):
    """Each block in a fresh shell or interpreter, in the file's order, in the reader's folder."""
    box, quick = reader
    assert quick.returncode == 0, quick.stderr[-2000:]
    for b in blocks(path):
        if b.kind not in ("run", "exit") or b.lang not in RUN_LANGS:
            continue
        run = box.run(b)
        assert run.returncode in b.exit_codes, (
            f"{b.where}: exit code {run.returncode}\n--- block\n{b.body}--- stdout\n{run.stdout[-2000:]}"
            f"--- stderr\n{run.stderr[-3000:]}")
        assert "Traceback" not in run.stderr, f"{b.where}:\n{run.stderr[-3000:]}"


@pytest.mark.slow
def test_the_main_job_trains_and_prints_the_results_table(reader):
    # The README's command as a reader runs it (.venv/bin/python in their folder), with fewer epochs:
    # the same steps, files and printed table.
    box, run = reader
    assert run.returncode == 0, run.stderr[-3000:]
    stdout, out = run.stdout, box.work / "runs" / "demo-nsa-logistic-s0"
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    n = QUICKSTART_EPOCHS
    assert metrics["category"] == "demo" and metrics["epoch"] == n
    assert [line.split(":")[0] for line in stdout.splitlines() if line.startswith("epoch ")] == \
        [f"epoch {e}/{n}" for e in range(1, n + 1)]
    assert f"image AUROC  {100 * metrics['image_auroc']:5.1f} %" in stdout
    assert f"pixel AUROC  {100 * metrics['pixel_auroc']:5.1f} %" in stdout
    for name in ("last.pt", "log.csv", f"grid_epoch{n:04d}.png", "eval/examples.png", "eval/roc.png", "eval/pro.png",
                 "eval/scores.csv"):
        assert (out / name).is_file(), name
        assert str((out / name).relative_to(box.work)) in stdout or name.startswith("grid"), name
    assert (box.home / ".cache" / "nsa_fast" / "data" / "demo" / "train").is_dir()  # where the README says
