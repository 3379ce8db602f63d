"""The merged model: base + ΔW written into a loaded model's weights, never accumulated."""

from __future__ import annotations

import torch


class MergeTarget:
    """A loaded base model whose adapted weights are rewritten as base + ΔW per candidate.

    The first `apply` copies each touched base weight once; every later `apply` writes
    base_copy + ΔW (never weight += ΔW), and modules a candidate does not touch go back to
    the base, so candidates never leak into each other.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._params = dict(model.named_parameters())
        self._base: dict[str, torch.Tensor] = {}
        self._dirty: set[str] = set()

    def _param(self, module: str) -> tuple[str, torch.nn.Parameter]:
        name = f"{module}.weight"
        if name not in self._params:
            raise KeyError(
                f"adapter module {module!r} has no weight {name!r} in the base model: "
                "was the adapter trained on another architecture?"
            )
        return name, self._params[name]

    @torch.no_grad()
    def apply(self, module_deltas) -> None:
        """Set weights to base + ΔW for each (module, ΔW); restore all others touched before."""
        touched = set()
        for module, delta in module_deltas:
            name, param = self._param(module)
            if name not in self._base:
                self._base[name] = param.detach().clone()
            base = self._base[name]
            if delta.shape != base.shape:
                raise ValueError(f"ΔW for {module} has shape {tuple(delta.shape)}, base weight {tuple(base.shape)}")
            # ΔW is computed on the CPU from the adapter files; the base may sit on a GPU.
            torch.add(base, delta.to(device=base.device, dtype=base.dtype), out=param.data)
            touched.add(name)
        for name in self._dirty - touched:
            self._params[name].data.copy_(self._base[name])
        self._dirty = touched

    @torch.no_grad()
    def restore(self) -> None:
        """Put every touched weight back to the base."""
        for name in self._dirty:
            self._params[name].data.copy_(self._base[name])
        self._dirty = set()
