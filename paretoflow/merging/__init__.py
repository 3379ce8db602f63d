"""Merging LoRA experts into one policy: exact weighted sum, TIES, DARE, task arithmetic.

Every method works on the experts' weight updates ΔWᵢ = scalingᵢ · Bᵢ Aᵢ (per target
module), never on A and B separately: peft's `add_weighted_adapter` with 'linear' (and
'ties' / 'dare_*') combines A and B matrices apart, which adds cross terms, so the result
is NOT Σ wᵢ ΔWᵢ (peft#3004; docs/measurements.md measured an error of 0.015 on entries ~0.024).
Rewarded Soups (Ramé et al. 2023) averaged A and B the same way; we compute the sum the
paper means.

Methods (one module each, registered in `methods.py`):

- exact:            ΔW = Σ wᵢ ΔWᵢ                                  (Rewarded Soups target)
- task_arithmetic:  ΔW = λ Σ wᵢ ΔWᵢ, wᵢ may be negative           (Ilharco et al. 2023)
- ties:             trim each ΔWᵢ to its top-`density` entries by magnitude, elect the sign
                    of Σ wᵢ ΔŴᵢ per entry, then the weighted mean of the entries that agree
                    with it: Σ wᵢ ΔŴᵢ·agreeᵢ / Σ wᵢ·agreeᵢ, scaled by λ (Yadav et al. 2023;
                    the paper's disjoint mean is the case of equal weights; with weights
                    this is mergekit's normalized form, so weight 1 on one expert returns
                    that expert's trimmed update)
- dare:             drop each entry of each ΔWᵢ with probability p, rescale survivors by
                    1/(1−p), then Σ wᵢ ΔW̃ᵢ (Yu et al. 2023). The drop mask is seeded per
                    (seed, expert, module) so a merge repeats exactly.

The merged model is base + ΔW written into a loaded model's weights. `MergeTarget` keeps a
copy of every touched base weight and always writes base + ΔW from that copy, so base
weights are never accumulated into across candidates; `restore()` puts the base back.

Experts must share their base model: adapters whose meta.json `base_model_fingerprint`
(or adapter_config `base_model_name_or_path`, when no fingerprint is recorded) differ
refuse to merge, naming both bases.

Usage:
    experts = [load_expert(p) for p in adapter_dirs]
    target = MergeTarget(model)
    target.apply(merge_deltas(experts, [0.7, 0.3], method="exact"))
    ...generate...
    target.restore()
"""

from __future__ import annotations

# The package imports torch only when a name is used: params validate `front.merge_method`
# against methods.METHODS without loading it. The imports below are explicit so the stage
# registry's import closure (paretoflow/stages/base.py) sees every submodule.
_NAMES = {
    "LoraExpert": "experts", "load_expert": "experts", "check_same_base": "experts",
    "MergeTarget": "target", "merge_deltas": "merge", "check_coefficients": "merge",
    "MERGE_METHODS": "methods", "MergeOptions": "methods", "check_method": "methods",
    "ties_merge": "ties", "dare_drop": "dare",
}


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'paretoflow.merging' has no attribute {name!r}")
    from paretoflow.merging import dare, experts, merge, methods, target, ties

    return getattr({"experts": experts, "target": target, "merge": merge, "methods": methods, "ties": ties,
                    "dare": dare}[_NAMES[name]], name)


__all__ = sorted(_NAMES)
