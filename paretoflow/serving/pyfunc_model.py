"""The MLflow pyfunc model of a registered candidate, logged as code (models-from-code).

Why models-from-code and not a pickled PythonModel instance: MLflow cloudpickles a
PythonModel object by default, and unpickling runs arbitrary code at load time
(MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false refuses it, docs/measurements.md). Logged as code,
the model is this source file plus safetensors/JSON artifacts; nothing is unpickled. The
file imports paretoflow, so the serving environment needs the project installed (its pip
requirements are recorded in the model).

Artifacts: `package` (recipe.json, the expert adapters as safetensors, base.json naming
the registered base model and its fingerprint). The base model is not in the candidate:
it is downloaded from the tracking server (`models:/paretoflow-base/N`) at load time and
cached locally by fingerprint, so a clean machine needs only MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


def _invalid(exc: Exception):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    # INVALID_PARAMETER_VALUE maps to HTTP 400 in `mlflow models serve`: a client error.
    return MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE)


class ParetoPolicyModel(PythonModel):
    """pyfunc face of paretoflow.serving.policy.ServedPolicy."""

    def load_context(self, context):
        from paretoflow.serving.base import open_package

        self.policy = open_package(context.artifacts["package"])

    def predict(self, context, model_input, params=None):
        from paretoflow.serving.policy import InvalidRequest
        from paretoflow.serving.signature import conversations, request_options

        try:
            messages = conversations(model_input)
            weights, options = request_options(params, self.policy.recipe)
            return self.policy.answer(messages, weights, **options)
        except InvalidRequest as exc:
            raise _invalid(exc) from None


mlflow.models.set_model(ParetoPolicyModel())
