"""The served model's contract: its MLflow signature and how a request becomes conversations.

Input: a `prompt` string or chat `messages` (a list of {role, content}) per row; output:
the answer string. Params: `weights` (one per objective, summing to 1; empty = the
registered recipe, the front's chosen point), `max_new_tokens`, `temperature` (0 = greedy).

An empty list stands for "the registered recipe" because a ParamSpec needs a concrete
default of its declared type.
"""

from __future__ import annotations

from paretoflow.serving.policy import InvalidRequest

DEFAULT_MAX_NEW_TOKENS = 64   # the front's CPU budget (params.yaml front.cpu.max_new_tokens)
MAX_NEW_TOKENS_LIMIT = 1024   # one request must not hold the model for minutes


def model_signature(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
    """ModelSignature: prompt or messages in, answer out, weights/max_new_tokens/temperature params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array, Object, Property

    message = Object([Property("role", "string"), Property("content", "string")])
    inputs = Schema([ColSpec("string", "prompt", required=False), ColSpec(Array(message), "messages", required=False)])
    outputs = Schema([ColSpec("string", "answer")])
    params = ParamSchema([
        ParamSpec("weights", "double", [], (-1,)),
        ParamSpec("max_new_tokens", "long", int(max_new_tokens)),
        ParamSpec("temperature", "double", 0.0),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _row_conversation(prompt, messages) -> list[dict[str, str]]:
    if messages is not None and len(messages) > 0:
        turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return turns
    if isinstance(prompt, str) and prompt:
        return [{"role": "user", "content": prompt}]
    raise InvalidRequest("each row needs a non-empty `prompt` string or `messages` list of {role, content}")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def conversations(model_input) -> list[list[dict[str, str]]]:
    """Conversations from a DataFrame (columns prompt and/or messages), a string, a list of
    strings, or a list of dicts."""
    import pandas as pd

    if isinstance(model_input, str):
        return [_row_conversation(model_input, None)]
    if isinstance(model_input, dict):
        single = isinstance(model_input.get("prompt"), str) or _is_turns(model_input.get("messages"))
        model_input = pd.DataFrame([model_input] if single else model_input)
    if isinstance(model_input, list):
        if all(isinstance(x, str) for x in model_input):
            return [_row_conversation(x, None) for x in model_input]
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise InvalidRequest(f"cannot read a request of type {type(model_input).__name__}")
    if not {"prompt", "messages"} & set(model_input.columns):
        raise InvalidRequest(f"request needs a `prompt` or `messages` column, got {list(model_input.columns)}")
    rows = []
    for record in model_input.to_dict("records"):
        prompt, messages = record.get("prompt"), record.get("messages")
        if not isinstance(prompt, str) and hasattr(prompt, "__len__") and all(isinstance(p, str) for p in prompt):
            # MLflow reads a dict input as one row: {"prompt": [a, b]} is two prompts.
            rows.extend(_row_conversation(p, None) for p in prompt)
            continue
        rows.append(_row_conversation(None if _missing(prompt) else prompt,
                                      None if messages is None or _missing(messages) else list(messages)))
    if not rows:
        raise InvalidRequest("empty request")
    return rows


def _is_turns(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def request_options(params: dict | None, recipe: dict) -> tuple[list[float] | None, dict]:
    """(weights or None for the registered recipe, generation options) from request params."""
    params = dict(params or {})
    weights = params.get("weights")
    weights = None if weights is None or len(weights) == 0 else [float(w) for w in weights]
    try:
        max_new_tokens = int(params.get("max_new_tokens") or recipe.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        temperature = float(params.get("temperature") or 0.0)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"max_new_tokens must be an integer and temperature a number: {exc}") from None
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise InvalidRequest(f"max_new_tokens must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {max_new_tokens}")
    return weights, {"max_new_tokens": max_new_tokens, "temperature": temperature}


__all__ = ["conversations", "model_signature", "request_options"]
