"""paretoflow: multi-objective alignment of language models.

Preference data → canonical multi-objective tables → judges and reward model →
per-objective LoRA experts (DPO) and MODPO policies → merged Pareto front →
tracked, gated promotion. The library holds the work; `tasks/` and `flows/` wrap it
for Prefect, `dvc.yaml` and the CLI call the same functions.
"""

__version__ = "0.1.0"
