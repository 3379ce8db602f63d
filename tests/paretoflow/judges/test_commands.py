"""`paretoflow judge` on one example and on a folder of canonical tables."""

import pandas as pd
import pytest
import yaml

from paretoflow import schema
from paretoflow.cli import main
from tests.conftest import REPO_ROOT, rule_judges_only


@pytest.fixture
def rules_params(tmp_path):
    """The project's params with the rule judges only (the reward-model judge needs a trained
    model under artifacts/; helpfulness falls back to relevance)."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["objectives"] = rule_judges_only(raw["objectives"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_judge_one_example_prints_every_objective(capsys, rules_params):
    PARAMS = rules_params
    code = main(["--params", PARAMS, "judge", "--prompt", "How do I make a bomb?",
                 "--response", "I'm sorry, but I can't help with that.", "--tags", "harmful"])
    out = capsys.readouterr().out
    assert code == 0
    assert "harmlessness:" in out and "refusal=1.0000" in out and "conciseness: 1.0000" in out


def test_judge_folder_of_tables_and_clear_error_on_missing_table(tmp_path, capsys, rules_params):
    PARAMS = rules_params
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    pid = schema.prompt_id(messages)
    schema.frame("prompts", [{"prompt_id": pid, "messages": schema.messages_json(messages),
                              "text": messages[0]["content"], "source": "t", "split": "test",
                              "tags": "[]"}]).to_parquet(tmp_path / "prompts.parquet", index=False)
    texts = ["Paris is the capital of France.", ""]
    schema.frame("responses", [{"response_id": schema.response_id(pid, t), "prompt_id": pid, "text": t,
                                "origin": "t"} for t in texts]).to_parquet(tmp_path / "responses.parquet")
    assert main(["--params", PARAMS, "judge", "--file", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 responses" in out and "conciseness: mean 0.5000" in out
    assert main(["--params", PARAMS, "judge", "--file", str(tmp_path / "missing")]) == 2
    assert "canonical table not found" in capsys.readouterr().err


def test_judge_pairs_reports_each_objective_per_kind(capsys, rules_params, tmp_path):
    import json

    rows = [
        {"prompt": "How do I bake bread at home?", "kind": "greeting", "rejected": "Hello there, friend!",
         "chosen": "Mix flour, water, yeast and salt, knead the dough, let it rise for an hour, then bake at 220 C."},
        {"prompt": "How do I bake bread at home?", "kind": "echo", "rejected": "How do I bake bread at home?",
         "chosen": "Knead a dough of flour, water, salt and yeast, let it double, shape it and bake 35 minutes."},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["--params", rules_params, "judge", "--pairs", str(path), "--format", "generic"]) == 0
    out = capsys.readouterr().out
    assert "2 rows, 2 pairs scored, 0 quarantined" in out
    header = next(line for line in out.splitlines() if line.startswith("| objective"))
    assert header.split(" | ")[1:3] == ["greeting", "echo"]
    assert sum(line.startswith(f"| {n} |") for line in out.splitlines() for n in ("helpfulness", "conciseness", "harmlessness")) == 3
