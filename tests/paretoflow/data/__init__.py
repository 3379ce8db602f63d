"""Shared by the data tests: curate one file and read its pairs back as texts."""

from __future__ import annotations

from pathlib import Path


def curated_pair_texts(root: Path, name: str, objectives: list, objective: str) -> tuple[dict, list[tuple[str, str, float]]]:
    """(the curate report, sorted (chosen text, rejected text, margin) of every curated pair)
    for the file `root/name` as the one source, of `objective`."""
    import pandas as pd

    from paretoflow.config import Params
    from paretoflow.data.curate import run
    from paretoflow.stages.curate import CurateConfig, SourceConfig

    params = Params(objectives=objectives, curate=CurateConfig(
        sources=[SourceConfig(path=name, objective=objective)], out_dir="curated"))
    report = run(params, root).report
    responses = pd.read_parquet(root / "curated/responses.parquet").set_index("response_id")["text"]
    pairs = pd.read_parquet(root / "curated/pairs.parquet")
    return report, sorted((responses[c], responses[r], m) for c, r, m in zip(pairs.chosen_id, pairs.rejected_id, pairs.margin))
