"""The adapter folder contract: what `meta.json` holds and when a folder is complete.

An adapter folder written by `paretoflow.align` holds adapter_model.safetensors,
adapter_config.json, train_log.json (and peft's README.md) and `meta.json`, which is
written LAST, inside a temporary folder that replaces the adapter folder in one rename.
`meta.json` lists the sha256 (16 hex) of every other file. So:

- a folder without a readable meta.json is incomplete (training still running, killed,
  or from an older version): the front, promote and the stage cache must skip it;
- `is_complete(folder)` checks that meta.json parses, names the files it hashed, and
  that they are on disk with those hashes (`verify=False` skips the hashing).

`AdapterMeta` is the part of meta.json other stages may rely on; extra keys (config,
metrics, versions, ...) are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

META_FILE = "meta.json"
REQUIRED_FILES = ("adapter_model.safetensors", "adapter_config.json", "train_log.json")


class AdapterMeta(BaseModel):
    """The keys of meta.json that the front, promote and the cache read."""

    model_config = ConfigDict(extra="allow")

    name: str  # the folder name (expert-<objective> / modpo-<weights>)
    loss: str  # dpo | ipo | modpo
    objective_weights: list[float] | None  # None for a DPO expert
    base_model_path: str
    base_model_fingerprint: str
    # Written by `paretoflow.align.run` (absent when `train_adapter` is called directly):
    objective: str | None = None  # whose pairs trained it (MODPO: the objective k)
    objective_names: list[str] = Field(default_factory=list)
    params_hash: str | None = None  # sections align, objectives, model, curate, pairs, reward
    sources: dict[str, Any] = Field(default_factory=dict)  # per kind: directory, data_hash, weight, counts
    seen: dict[str, Any]  # per kind: pairs / visits / truncation of what training visited
    truncation: dict[str, Any]  # train (visited) and val totals
    objective_index: int | None = None  # MODPO: index of the objective whose pairs trained it
    margin_objectives: list[str] = Field(default_factory=list)  # MODPO: objectives entering as margins
    margin_raters: dict[str, str] = Field(default_factory=dict)  # objective -> rater (MODPO)
    reward_model: dict[str, str] | None = None  # {dir, hash} when margins came from the reward model
    selection: dict[str, Any] | None = None
    steps: int
    best_step: int | None
    best_metric: dict[str, float | None]
    metrics: dict[str, Any]
    files: dict[str, str]  # file name -> sha256[:16], every other file of the folder


def read_meta(folder: str | Path) -> AdapterMeta:
    """meta.json of an adapter folder, validated (a clear error naming the file otherwise)."""
    path = Path(folder) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no meta.json, the adapter is incomplete (training did not finish)")
    try:
        return AdapterMeta.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid adapter meta.json ({exc})") from exc


def seal(folder: str | Path, meta: dict[str, Any]) -> AdapterMeta:
    """Write meta.json into `folder` LAST, listing the hash of every other file: the folder
    becomes complete. `meta` must hold AdapterMeta's keys (checked before anything is written)."""
    from paretoflow.io import file_hash, write_json

    folder = Path(folder)
    files = {p.name: file_hash(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != META_FILE}
    checked = AdapterMeta.model_validate({**meta, "files": files})
    write_json(folder / META_FILE, {**meta, "files": files})
    return checked


def is_complete(folder: str | Path, verify: bool = True) -> bool:
    """True when `folder` is a finished adapter: meta.json valid, its files present and
    (verify=True) matching the hashes meta.json recorded."""
    from paretoflow.io import file_hash

    folder = Path(folder)
    try:
        meta = read_meta(folder)
    except (FileNotFoundError, ValueError):
        return False
    if any(name not in meta.files for name in REQUIRED_FILES):
        return False
    for name, digest in meta.files.items():
        path = folder / name
        if not path.is_file() or (verify and file_hash(path) != digest):
            return False
    return True


__all__ = ["META_FILE", "REQUIRED_FILES", "AdapterMeta", "is_complete", "read_meta", "seal"]
