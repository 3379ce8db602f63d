"""Code shape: no function in the library, tasks or flows longer than ~80 lines.

Long functions hid the checkpoint logic of alignment and the steps of the reward and front
stages (issue 13). The limit counts a function's lines from `def` to its last statement,
decorators and docstring included; `python tests/test_code_shape.py` prints the longest.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("paretoflow", "tasks", "flows")
LIMIT = 80


def function_lengths() -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    out.append((node.end_lineno - start + 1, f"{path.relative_to(REPO)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def test_no_function_is_longer_than_the_limit():
    long = [f"{n} lines  {where}" for n, where in function_lengths() if n > LIMIT]
    assert not long, "functions over %d lines:\n%s" % (LIMIT, "\n".join(long))


if __name__ == "__main__":
    for n, where in function_lengths()[: int(sys.argv[1]) if len(sys.argv) > 1 else 15]:
        print(f"{n:4d}  {where}")
