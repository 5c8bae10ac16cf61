"""The package's shape: an acyclic import graph, small modules, each concept's twins in one place."""
import ast
from pathlib import Path

import numpy as np
import torch

PKG = Path(__file__).resolve().parents[1] / "nsa_fast"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every nsa_fast module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.startswith("nsa_fast")}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {t for t in imports(p) if t in files and t != m} for m, p in files.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_import_graph_is_acyclic_counting_imports_inside_functions():
    g = graph()
    assert len(g) > 30 and "nsa_fast.labels" in g["nsa_fast.blend.opencv"]
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_about_400_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_the_core_modules_import_no_command_line():
    core = ["nsa_fast.sampler", "nsa_fast.labels", "nsa_fast.objects", "nsa_fast.filters", "nsa_fast.synthesis",
            "nsa_fast.pipelines", "nsa_fast.blend.ops", "nsa_fast.blend.batched", "nsa_fast.blend.opencv"]
    g = graph()
    clis = {"nsa_fast.synth", "nsa_fast.train", "nsa_fast.evaluate", "nsa_fast.predict", "nsa_fast.runner",
            "nsa_fast.cli", "nsa_fast.doctor"}
    assert {m: g[m] & clis for m in core if g[m] & clis} == {}


def test_object_masks_and_the_binary_median_take_numpy_and_torch_alike():
    from nsa_fast.filters import binary_median
    from nsa_fast.objects import object_mask

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    a = object_mask(img, (120, 40))
    b = object_mask(torch.from_numpy(img[None]), (120, 40))[0]
    assert a.dtype == bool and b.dtype == torch.bool and np.array_equal(a, b.numpy()) and 0 < a.mean() < 1
    m = (rng.random((30, 30)) < 0.5).astype(np.uint8)
    assert np.array_equal(binary_median(m, 5), binary_median(torch.from_numpy(m[None]), 5)[0].numpy())


def test_one_docstring_style_prose_with_shapes_not_google_sections():
    sections = ("    Args:", "    Returns:", "    Raises:", "    Parameters\n    ----------")
    found = [f"{p.relative_to(PKG)}: {s.strip()}" for p in PKG.rglob("*.py") for s in sections if s in p.read_text()]
    assert not found
