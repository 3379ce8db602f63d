"""Writing a candidate package as an MLflow Model (pyfunc, models-from-code).

`save_candidate_model(package, out)` writes an MLflow Model folder whose python model is
paretoflow/serving/pyfunc_model.py (as code: nothing is pickled), whose one artifact is
the package (recipe.json, adapters/, base.json), with the signature of
paretoflow/serving/signature.py and the project's pip requirements.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

MODEL_ARTIFACT = "model"   # where a candidate run logs its MLflow Model (the registered source)
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def project_requirements() -> list[str]:
    """The installed project's runtime requirements (no extras): what serving needs imported."""
    try:
        requires = metadata.requires("paretoflow") or []
    except metadata.PackageNotFoundError:
        return []
    return [r.split(";")[0].strip() for r in requires if "extra ==" not in r]


def save_candidate_model(package: Path, out: Path) -> Path:
    """An MLflow Model folder at `out` serving the candidate in `package`."""
    import mlflow

    from paretoflow.serving.signature import DEFAULT_MAX_NEW_TOKENS, model_signature

    recipe = json.loads((Path(package) / "recipe.json").read_text())
    mlflow.pyfunc.save_model(
        path=str(out), python_model=str(PYFUNC_CODE), artifacts={"package": str(package)},
        signature=model_signature(recipe.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        pip_requirements=project_requirements(),
        metadata={"paretoflow.candidate": recipe.get("candidate", ""), "paretoflow.method": recipe.get("method", ""),
                  "paretoflow.objectives": ",".join(recipe.get("objective_names") or []),
                  "paretoflow.base_fingerprint": recipe.get("base_fingerprint", "")})
    return Path(out)


__all__ = ["MODEL_ARTIFACT", "project_requirements", "save_candidate_model"]
