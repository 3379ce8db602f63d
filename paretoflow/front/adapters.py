"""Finding the trained adapters the front merges and compares: complete ones only.

An adapter folder is complete when `paretoflow.align.is_complete` says so: align writes
`meta.json` last, listing the hashes of the weights, so a folder without a valid one (or
with files that no longer match it) is a run still training, one that was killed or one
edited since (issue 11). Incomplete folders are skipped and listed with the reason, never
merged, evaluated or promoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paretoflow.align.meta import is_complete
from paretoflow.merging import LoraExpert, load_expert

EXPERT_PREFIX = "expert-"
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass
class AdapterInventory:
    experts: list[LoraExpert]           # ordered as the objectives are declared
    expert_objectives: list[str]
    others: list[LoraExpert]            # MODPO and any other trained adapter
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (folder name, reason)


def _is_expert(folder: Path, adapter: LoraExpert) -> bool:
    # MODPO policies also record the objective whose pairs trained them; what makes an
    # expert is having no objective weights.
    if adapter.objective_weights is not None:
        return False
    return folder.name.startswith(EXPERT_PREFIX) or bool(adapter.meta.get("objective"))


def discover_adapters(adapters_dir: str | Path, objective_names: Sequence[str]) -> AdapterInventory:
    """Experts (`expert-<objective>` or meta.json `objective`) and other adapters under a folder."""
    adapters_dir = Path(adapters_dir)
    if not adapters_dir.is_dir():
        raise FileNotFoundError(f"adapters folder not found: {adapters_dir} (run `paretoflow align` first)")
    by_objective: dict[str, LoraExpert] = {}
    others: list[LoraExpert] = []
    skipped: list[tuple[str, str]] = []
    for folder in sorted(p for p in adapters_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / WEIGHTS_FILE).exists():
            continue
        if not is_complete(folder):
            skipped.append((folder.name, "incomplete: meta.json missing, invalid or not matching the files "
                                         "(training unfinished, killed or edited)"))
            continue
        adapter = load_expert(folder)
        if not _is_expert(folder, adapter):
            others.append(adapter)
            continue
        objective = adapter.meta.get("objective") or folder.name[len(EXPERT_PREFIX):]
        if objective not in objective_names:
            raise ValueError(f"adapter {folder}: objective {objective!r} is not declared ({list(objective_names)})")
        if objective in by_objective:
            raise ValueError(f"two experts for objective {objective!r}: {by_objective[objective].path} and {folder}")
        by_objective[objective] = adapter
    ordered = [name for name in objective_names if name in by_objective]
    return AdapterInventory([by_objective[n] for n in ordered], ordered, others, skipped)


__all__ = ["EXPERT_PREFIX", "AdapterInventory", "discover_adapters", "is_complete"]
