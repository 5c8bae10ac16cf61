"""The code blocks of README.md and docs/*.md, and a reader's sandbox to run them in.

A block is a fenced ``bash`` or ``python`` block; ``text`` blocks are output and are not run. An
HTML comment on the line before a block's fence says how the tests take it:

    <!-- doc-test: run -->         (the default) run as written; exit code 0
    <!-- doc-test: exit 0 1 -->    run as written; any of these exit codes
    <!-- doc-test: parse -->       each nsa_fast command's arguments are parsed by its own parser,
                                   not run: it needs a GPU, real data or hours
    <!-- doc-test: docker -->      docker commands: build arguments and stages exist in the
                                   Dockerfile, the image's arguments parse
    <!-- doc-test: quickstart -->  README's quick start (tests/test_quickstart.py runs it)

The sandbox is what a reader has after the quick start: a working folder with ``.venv/bin/python``
(this interpreter), ``python`` on the PATH, a home folder of their own (the demo data lands in
``~/.cache/nsa_fast``) and the quick start's run folder ``runs/demo-nsa-logistic-s0``.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIRECTIVES = ("run", "exit", "parse", "docker", "quickstart")
_FENCE = re.compile(r"(?:<!-- doc-test: (?P<directive>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    body: str
    directive: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str:
        return self.directive.split()[0]

    @property
    def exit_codes(self) -> set[int]:
        words = self.directive.split()
        return {int(w) for w in words[1:]} if words[0] == "exit" else {0}


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("lang")) + 1
        out.append(Block(path, line, m["lang"], m["body"], (m["directive"] or "run").strip()))
    return out


def commands(body: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def module_command(words: list[str]) -> tuple[str, list[str]] | None:
    """(module, argv) of ``[.venv/bin/]python -m nsa_fast.X ...`` or ``torchrun ... -m nsa_fast.X``."""
    if "-m" not in words:
        return None
    i = words.index("-m")
    prog = Path(words[0]).name
    if not (prog.startswith("python") or prog == "torchrun") or i + 1 >= len(words):
        return None
    return words[i + 1], words[i + 2:]


class Sandbox:
    """A reader's folders, and how a block runs there."""

    def __init__(self, root: Path):
        self.root = root
        self.work, self.home, self.bin = root / "work", root / "home", root / "bin"
        for d in (self.work / ".venv" / "bin", self.home, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        # Scripts, not symlinks: a virtual environment's interpreter finds its packages through the
        # path it is started by, which a link in another folder would change.
        for script in (self.work / ".venv" / "bin" / "python", self.bin / "python", self.bin / "python3"):
            script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
            script.chmod(0o755)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "NSA_FAST_CACHE" and not k.startswith("PYTEST")}
        env.update(HOME=str(self.home), PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
                   PYTHONPATH=str(REPO), MPLBACKEND="Agg")
        return env

    def run(self, block: Block, timeout: int = 600) -> subprocess.CompletedProcess:
        if block.lang == "python":
            argv = [sys.executable, "-c", block.body]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", block.body]
        return subprocess.run(argv, cwd=self.work, env=self.env(), capture_output=True, text=True, timeout=timeout)
