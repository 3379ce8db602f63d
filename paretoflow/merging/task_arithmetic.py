"""task_arithmetic: ΔW = λ Σ wᵢ ΔWᵢ; wᵢ may be negative (subtract a task; Ilharco et al. 2023)."""

from __future__ import annotations

from paretoflow.merging.exact import weighted_sum

NON_NEGATIVE = False


def merge(module: str, present, weights, options):
    return weighted_sum(module, present, weights, options.task_arithmetic_lambda)
