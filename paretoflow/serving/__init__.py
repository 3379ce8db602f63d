"""Serving a registered candidate: an MLflow pyfunc model that answers with any trade-off.

- `policy.py`: ServedPolicy, the base + every expert + the recipe; exact Σ wᵢΔWᵢ per request.
- `signature.py`: the model's signature and request parsing.
- `pyfunc_model.py`: the PythonModel, logged as code (models-from-code).
- `mlflow_model.py`: writes a package as an MLflow Model folder.
- `base.py`: the base model as its own registered model, downloaded by fingerprint.
- `export.py`: a candidate as one standard peft adapter (exact 'cat' merge) or merged weights.

    mlflow.pyfunc.load_model("models:/paretoflow-policy@champion").predict(
        {"prompt": "How do I sleep better?"}, params={"weights": [0.2, 0.5, 0.3]})
"""
