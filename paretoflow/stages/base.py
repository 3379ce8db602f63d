"""What a stage declares (`Stage`) and the code it runs (the import closure of its module).

For each stage: the function that runs it, its own config section, the params sections it
reads, its inputs and outputs (derived from params: a stage's input is the producing
stage's `out_dir`, never a second default), its CLI command and what the flow logs. The
code a stage runs is not listed by hand: it is the closure of the paretoflow modules its
module imports (`code_files`, lazy imports inside functions included, imports made only
for type checkers excluded), so editing `paretoflow/reward/model.py` changes the code hash
of every stage that scores with the reward model, and editing `paretoflow/config.py`
(which holds `Params`, imported by stages for type hints only) changes none.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretoflow.config import Params

LIBRARY_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "paretoflow"

CURATED_TABLES = ("prompts", "responses", "ratings", "pairs")


def curated(params: Params, *tables: str) -> list[str]:
    """The curated tables' paths (the curate stage's outputs), relative to the root."""
    return [f"{params.curate.out_dir}/{t}.parquet" for t in tables]


def _nothing(params: Params) -> list[str]:
    return []


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, declared once (in its own module, `STAGE`)."""

    name: str
    run: Callable[..., Any]                      # run(params, root, **job) -> result dataclass
    command: str                                 # the CLI call `dvc repro` runs
    sections: tuple[str, ...]                    # params sections it reads (DVC params, cache key)
    inputs: Callable[[Params], list[str]]        # files/folders it reads, relative to root
    outputs: Callable[[Params], list[str]]       # files/folders it writes, relative to root
    summary: str                                 # one line for the diagram
    artifacts: Callable[[Params], list[str]] = _nothing  # what the flow logs to MLflow
    cached: bool = True                          # Prefect cross-process cache
    retries: int = 0                             # Prefect task retries (transient failures)
    dvc: bool = True                             # a DVC stage (promote moves registry aliases)
    jobs: Callable[[Params], list[dict[str, Any]]] | None = None  # units of work (align: one per adapter)
    job_name: Callable[[dict[str, Any]], str] | None = None       # job kwargs → output sub-folder
    # its outputs depend on the policy's weights (per params: `policy_read`)
    reads_policy: bool | Callable[[Params], bool] = False
    extra_code: tuple[str, ...] = field(default=())  # modules loaded by name, not import

    @property
    def section(self) -> str:
        """Its own params section: the stage's name (config class in its module)."""
        return self.name

    @property
    def module(self) -> str:
        return self.run.__module__

    @property
    def entry(self) -> str:
        return f"{self.module}:{self.run.__name__}"

    def policy_read(self, params: Params) -> bool:
        """Whether this run of the stage reads the policy (a profile may, another not)."""
        return bool(self.reads_policy(params) if callable(self.reads_policy) else self.reads_policy)

    def job_list(self, params: Params) -> list[dict[str, Any]]:
        """The units of work of one run: [{}] for a plain stage, one dict per adapter for align."""
        return [{}] if self.jobs is None else self.jobs(params)

    def name_of(self, job: dict[str, Any]) -> str | None:
        """A job's name (align: the adapter folder); None for a stage without jobs."""
        if not job or self.job_name is None:
            return None
        return self.job_name(job)

    def outputs_for(self, params: Params, job: dict[str, Any] | None = None) -> list[str]:
        """What one job writes (align: its adapter folder); the stage's outputs otherwise."""
        name = self.name_of(job or {})
        outs = self.outputs(params)
        return [f"{o}/{name}" for o in outs] if name else outs

    def code_files(self) -> list[str]:
        """The library files this stage runs (repo-relative), from the import closure."""
        return sorted(import_closure((self.module, *self.extra_code)))

    def code_hash(self) -> str:
        h = hashlib.sha256()
        for rel in self.code_files():
            h.update(rel.encode())
            h.update((LIBRARY_ROOT / rel).read_bytes())
        return h.hexdigest()[:16]


# ------------------------------------------------------------------ code closure


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = LIBRARY_ROOT.joinpath(*parts)
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _type_checking_only(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports that never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (inside functions too), not the type-checking ones."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                todo.extend(child.orelse)
            else:
                todo.append(child)
    return found


def _imported_modules(module: str, path: Path) -> set[str]:
    """paretoflow modules named by the import statements of one file (lazy ones included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {m for m in found if m.split(".")[0] == PACKAGE}


@functools.lru_cache(maxsize=None)
def import_closure(modules: tuple[str, ...]) -> frozenset[str]:
    """Repo-relative files of every paretoflow module reachable from `modules` by imports.

    Importing `a.b.c` runs the `__init__` of `a` and `a.b` too, so those are included.
    """
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            path = _module_file(name)
            if path is None or name in seen:
                continue
            seen[name] = path
            todo.extend(_imported_modules(name, path))
    return frozenset(p.relative_to(LIBRARY_ROOT).as_posix() for p in seen.values())


__all__ = ["CURATED_TABLES", "Stage", "curated", "import_closure"]
