"""Validation gate on the curated tables: Great Expectations suites that pass or stop.

`run(params, root)` reads `data/curated/{prompts,responses,ratings,pairs,quarantine}.parquet`
(the canonical schema of `paretoflow.schema`), validates them with Great Expectations
1.24 in an ephemeral, in-code context, writes a filesystem Data Docs site to
`params.validate.docs_dir` and a machine-readable `validation.json` beside it, and
raises `ValidationFailed` naming each failed expectation, its table/column and example
offending ids. The docs and the JSON are written whether the data passes or not.

What is checked, per table:
- stored tables: exact column set, dtypes (`str` / `float64`), non-null ids and text,
  unique ids, split and objective values in their declared sets, rating value inside
  the rater's [scale_min, scale_max] (and inside the objective's declared scale where the
  rater used that scale), chosen_id != rejected_id, margin >= 0.
- derived frames (computed here with pandas, then validated by GE so every check shows
  up in Data Docs with its offending ids): messages JSON well formed with a final user
  turn, `text` equal to that turn, content-hash ids recomputed from content, word counts
  within bounds, foreign keys resolve (responses → prompts, ratings → responses,
  pairs → prompts/responses, chosen and rejected answer the pair's prompt), no
  prompt_id in two splits, prompts per split >= `min_prompts_per_split`, pairs per
  (objective, split) >= `min_pairs_per_objective_split` (pairs take their prompt's split).

Cross-table checks are not native GE expectations on pandas (UnexpectedRowsExpectation is
SQL only), hence the derived frames. `import great_expectations` costs ~4 s, so it is
imported inside the functions that need it; importing paretoflow stays fast.

Run: `paretoflow validate` (CLI), `dvc repro validate`, or the Prefect task.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from paretoflow import schema

if TYPE_CHECKING:
    from paretoflow.config import Params

STORED_TABLES = ("prompts", "responses", "ratings", "pairs", "quarantine")
FLOAT_COLUMNS = ("value", "scale_min", "scale_max", "margin")
REPORT_NAME = "validation.json"
SITE_NAME = "paretoflow"
# How many offending ids a failure message and validation.json show per expectation.
MAX_EXAMPLES = 5


class ValidationFailed(ValueError):
    """The curated data broke at least one expectation; `.result` holds every outcome."""

    def __init__(self, result: "ValidationResult"):
        self.result = result
        lines = [f"data validation failed: {len(result.failures)} of {len(result.outcomes)} expectations"]
        lines += [f"  - {o.describe()}" for o in result.failures]
        lines.append(f"  Data Docs: {result.docs_path}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict on one table (stored or derived)."""

    table: str
    expectation: str
    column: str | None
    success: bool
    # None for table-level expectations (column set, row count) that have no rows to blame.
    unexpected_count: int | None = None
    examples: list[str] = field(default_factory=list)
    observed: Any = None
    why: str = ""

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.expectation}"
        if self.why:
            text += f" ({self.why})"
        if self.unexpected_count:
            text += f": {self.unexpected_count} offending row(s), e.g. {', '.join(self.examples)}"
        elif self.observed is not None and not self.success:
            text += f": observed {self.observed}"
        return text


@dataclass
class ValidationResult:
    success: bool
    outcomes: list[ExpectationOutcome]
    docs_path: Path  # Data Docs index.html
    report_path: Path  # validation.json
    # Rows per stored table, prompts per split ("prompts/train"), pairs per
    # objective and split ("pairs/helpfulness/train"): numbers the flow logs.
    counts: dict[str, int]
    skipped: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def metrics(self) -> dict[str, float]:
        """Flat numeric summary (MLflow metric names avoid `( ) @` and `/` is fine)."""
        out: dict[str, float] = {
            "validate/success": float(self.success),
            "validate/expectations": float(len(self.outcomes)),
            "validate/failed": float(len(self.failures)),
        }
        out.update({f"validate/rows/{k}": float(v) for k, v in self.counts.items()})
        return out


# ---------------------------------------------------------------------------------------
# Reading


def read_tables(curated_dir: Path) -> dict[str, pd.DataFrame]:
    """The five curated Parquet tables; a missing file is an error naming the path."""
    tables = {}
    for name in STORED_TABLES:
        path = curated_dir / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"curated table not found: {path} (run `paretoflow curate` first)")
        tables[name] = pd.read_parquet(path)
    return tables


# ---------------------------------------------------------------------------------------
# Derived frames: cross-row and cross-table facts computed with pandas, validated by GE.


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _messages_well_formed(messages: Any) -> bool:
    if not isinstance(messages, list) or not messages:
        return False
    for turn in messages:
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            return False
        if turn["role"] not in schema.ROLES or not isinstance(turn["content"], str):
            return False
    return messages[-1]["role"] == "user"


def _tags_well_formed(tags: Any) -> bool:
    return isinstance(tags, list) and all(isinstance(t, str) for t in tags)


def prompt_content_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for prompt_id, messages_text, text, tags_text in zip(
        prompts["prompt_id"], prompts["messages"], prompts["text"], prompts["tags"]
    ):
        messages = _parse_json(messages_text)
        well_formed = _messages_well_formed(messages)
        rows.append(
            {
                "prompt_id": prompt_id,
                "messages_well_formed": well_formed,
                "text_is_last_user_turn": well_formed and messages[-1]["content"] == text,
                "id_matches_content": well_formed and schema.prompt_id(messages) == prompt_id,
                "tags_well_formed": _tags_well_formed(_parse_json(tags_text)),
                "word_count": _words(text),
            }
        )
    return _typed(rows, ["prompt_id", "messages_well_formed", "text_is_last_user_turn",
                         "id_matches_content", "tags_well_formed", "word_count"])


def prompt_split_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (prompt_id, split): a prompt_id seen twice here is in two splits."""
    return prompts[["prompt_id", "split"]].drop_duplicates().reset_index(drop=True)


def split_count_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    counts = prompts["split"].value_counts()
    splits = list(schema.SPLITS)  # unknown split names fail on prompts.split already
    return _typed([{"split": s, "prompt_count": int(counts.get(s, 0))} for s in splits],
                  ["split", "prompt_count"])


def response_link_frame(responses: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    known = set(prompts["prompt_id"])
    rows = [
        {
            "response_id": response_id,
            "prompt_known": prompt_id in known,
            "id_matches_content": isinstance(prompt_id, str) and isinstance(text, str)
            and schema.response_id(prompt_id, text) == response_id,
            "word_count": _words(text),
        }
        for response_id, prompt_id, text in zip(responses["response_id"], responses["prompt_id"], responses["text"])
    ]
    return _typed(rows, ["response_id", "prompt_known", "id_matches_content", "word_count"])


def rating_link_frame(ratings: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    known = set(responses["response_id"])
    rows = [
        {"rating": f"{r}|{o}|{w}", "response_known": r in known}
        for r, o, w in zip(ratings["response_id"], ratings["objective"], ratings["rater"])
    ]
    return _typed(rows, ["rating", "response_known"])


def pair_link_frame(pairs: pd.DataFrame, responses: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    prompt_of = dict(zip(responses["response_id"], responses["prompt_id"]))
    known_prompts = set(prompts["prompt_id"])
    rows = []
    for pid, prompt, chosen, rejected, objective in zip(
        pairs["pair_id"], pairs["prompt_id"], pairs["chosen_id"], pairs["rejected_id"], pairs["objective"]
    ):
        rows.append(
            {
                "pair_id": pid,
                "prompt_known": prompt in known_prompts,
                "chosen_known": chosen in prompt_of,
                "rejected_known": rejected in prompt_of,
                "chosen_answers_prompt": prompt_of.get(chosen) == prompt,
                "rejected_answers_prompt": prompt_of.get(rejected) == prompt,
                "id_matches_content": all(isinstance(x, str) for x in (prompt, chosen, rejected, objective))
                and schema.pair_id(prompt, chosen, rejected, objective) == pid,
            }
        )
    return _typed(rows, ["pair_id", "prompt_known", "chosen_known", "rejected_known",
                         "chosen_answers_prompt", "rejected_answers_prompt", "id_matches_content"])


def pair_count_frame(pairs: pd.DataFrame, prompts: pd.DataFrame, objective_names: list[str]) -> pd.DataFrame:
    """Pairs per (objective, split), every declared objective × split present (zero-filled)."""
    split_of = dict(zip(prompts["prompt_id"], prompts["split"]))
    splits = pairs["prompt_id"].map(split_of)
    counts = pd.DataFrame({"objective": pairs["objective"], "split": splits}).value_counts()
    rows = [
        {"objective_split": f"{o}/{s}", "pair_count": int(counts.get((o, s), 0))}
        for o in objective_names
        for s in schema.SPLITS
    ]
    return _typed(rows, ["objective_split", "pair_count"])


def _typed(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for c in columns:
        if c.endswith("_count"):
            df[c] = df[c].astype("int64")
        elif df[c].dtype == object and all(isinstance(v, bool) for v in df[c]):
            df[c] = df[c].astype("bool")
    return df


# ---------------------------------------------------------------------------------------
# Suites: for each frame, its id column (for offending ids) and its expectations.


@dataclass
class _Frame:
    name: str
    data: pd.DataFrame
    id_column: str
    expectations: list[tuple[Any, str]]  # (GE expectation, why)


def _build_frames(tables: dict[str, pd.DataFrame], params: "Params") -> tuple[list[_Frame], list[str]]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    cfg = params.validate_
    objectives = params.objective_names
    frames: list[_Frame] = []
    skipped: list[str] = []

    def columns_ok(name: str) -> bool:
        expected = schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)
        return set(expected) <= set(tables[name].columns)

    def stored(name: str, id_column: str, extra: list[tuple[Any, str]]) -> None:
        columns = schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)
        exps: list[tuple[Any, str]] = [
            (gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True), "canonical columns")
        ]
        if columns_ok(name):
            for c in columns:
                type_ = "float64" if c in FLOAT_COLUMNS else "str"
                exps.append((gxe.ExpectColumnValuesToBeOfType(column=c, type_=type_), "canonical dtype"))
        frames.append(_Frame(name, tables[name], id_column, exps + (extra if columns_ok(name) else [])))

    def not_null(*columns: str) -> list[tuple[Any, str]]:
        return [(gxe.ExpectColumnValuesToNotBeNull(column=c), "required") for c in columns]

    def all_true(*columns: str, why: dict[str, str]) -> list[tuple[Any, str]]:
        return [(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), why[c]) for c in columns]

    stored("prompts", "prompt_id", [
        *not_null("prompt_id", "messages", "text", "split", "tags"),
        (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "content-hash id"),
        (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(schema.SPLITS)), "declared splits"),
    ])
    stored("responses", "response_id", [
        *not_null("response_id", "prompt_id", "text", "origin"),
        (gxe.ExpectColumnValuesToBeUnique(column="response_id"), "content-hash id"),
    ])
    rating_checks: list[tuple[Any, str]] = [
        *not_null("response_id", "objective", "value", "scale_min", "scale_max", "rater"),
        (gxe.ExpectCompoundColumnsToBeUnique(column_list=["response_id", "objective", "rater"]),
         "one rating per response, objective and rater"),
        (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=objectives), "declared objectives"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="scale_max", column_B="scale_min"),
         "scale_min < scale_max"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="value", column_B="scale_min", or_equal=True),
         "value >= scale_min"),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="scale_max", column_B="value", or_equal=True),
         "value <= scale_max"),
    ]
    for objective in params.objectives:
        low, high = objective.scale
        # Ratings on the objective's own scale must lie inside the declared scale; ratings on
        # a rater's native scale (e.g. 0-4 Likert) are normalised by later stages.
        condition = (Column("objective") == objective.name) & (Column("scale_min") == low) & (Column("scale_max") == high)
        rating_checks.append((
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=low, max_value=high, row_condition=condition),
            f"{objective.name} ratings on its declared scale [{low}, {high}]",
        ))
    stored("ratings", "response_id", rating_checks)
    stored("pairs", "pair_id", [
        *not_null("pair_id", "prompt_id", "chosen_id", "rejected_id", "objective", "source"),
        (gxe.ExpectColumnValuesToBeUnique(column="pair_id"), "content-hash id"),
        (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=objectives), "declared objectives"),
        (gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=["chosen_id", "rejected_id"]),
         "chosen_id != rejected_id"),
        (gxe.ExpectColumnValuesToBeBetween(column="margin", min_value=0.0), "chosen is not rated below rejected"),
    ])
    stored("quarantine", "location", [*not_null("source", "reason")])

    prompts_ok, responses_ok = columns_ok("prompts"), columns_ok("responses")
    if prompts_ok:
        frames.append(_Frame("prompts_content", prompt_content_frame(tables["prompts"]), "prompt_id", [
            *all_true("messages_well_formed", "text_is_last_user_turn", "id_matches_content", "tags_well_formed", why={
                "messages_well_formed": "JSON list of {role, content}, last turn from the user",
                "text_is_last_user_turn": "text equals the last user turn",
                "id_matches_content": "prompt_id == schema.prompt_id(messages)",
                "tags_well_formed": "JSON list of strings",
            }),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", min_value=1, max_value=cfg.max_words),
             f"1..{cfg.max_words} words"),
        ]))
        frames.append(_Frame("prompt_splits", prompt_split_frame(tables["prompts"]), "prompt_id", [
            (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "no prompt_id shared across splits"),
        ]))
        frames.append(_Frame("split_counts", split_count_frame(tables["prompts"]), "split", [
            (gxe.ExpectColumnValuesToBeBetween(column="prompt_count", min_value=cfg.min_prompts_per_split),
             f"at least {cfg.min_prompts_per_split} prompts per split"),
        ]))
    else:
        skipped += ["prompts_content", "prompt_splits", "split_counts"]
    if prompts_ok and responses_ok:
        frames.append(_Frame("responses_links", response_link_frame(tables["responses"], tables["prompts"]),
                             "response_id", [
            *all_true("prompt_known", "id_matches_content", why={
                "prompt_known": "prompt_id exists in prompts",
                "id_matches_content": "response_id == schema.response_id(prompt_id, text)",
            }),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", max_value=cfg.max_words),
             f"at most {cfg.max_words} words"),
        ]))
    else:
        skipped.append("responses_links")
    if responses_ok and columns_ok("ratings"):
        frames.append(_Frame("ratings_links", rating_link_frame(tables["ratings"], tables["responses"]), "rating", [
            *all_true("response_known", why={"response_known": "response_id exists in responses"}),
        ]))
    else:
        skipped.append("ratings_links")
    if prompts_ok and responses_ok and columns_ok("pairs"):
        links = ["prompt_known", "chosen_known", "rejected_known", "chosen_answers_prompt",
                 "rejected_answers_prompt", "id_matches_content"]
        frames.append(_Frame("pairs_links", pair_link_frame(tables["pairs"], tables["responses"], tables["prompts"]),
                             "pair_id", all_true(*links, why={
            "prompt_known": "prompt_id exists in prompts",
            "chosen_known": "chosen_id exists in responses",
            "rejected_known": "rejected_id exists in responses",
            "chosen_answers_prompt": "chosen response belongs to the pair's prompt",
            "rejected_answers_prompt": "rejected response belongs to the pair's prompt",
            "id_matches_content": "pair_id == schema.pair_id(prompt, chosen, rejected, objective)",
        })))
        frames.append(_Frame("pair_counts", pair_count_frame(tables["pairs"], tables["prompts"], objectives),
                             "objective_split", [
            (gxe.ExpectColumnValuesToBeBetween(column="pair_count", min_value=cfg.min_pairs_per_objective_split),
             f"at least {cfg.min_pairs_per_objective_split} pairs per objective and split"),
        ]))
    else:
        skipped += ["pairs_links", "pair_counts"]
    return frames, skipped


# ---------------------------------------------------------------------------------------
# Running


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            SITE_NAME: {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_cta_footer": False},
                # Validation pages already show every expectation with its verdict; separate
                # suite pages doubled the render time (~0.15 s a page on 2 cores).
                "site_section_builders": {"expectations": "0", "profiling": "0"},
                "show_how_to_buttons": False,
            }
        },
        analytics_enabled=False,  # offline machines; no usage statistics
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def validate_tables(
    tables: dict[str, pd.DataFrame],
    params: "Params",
    docs_dir: Path,
    report_path: Path | None = None,
) -> ValidationResult:
    """Validate in-memory canonical tables; write Data Docs and validation.json; never raise
    on failed expectations (`run` does). Missing tables count as empty ones."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    tables = {name: tables[name] if name in tables else schema.empty_table(name) for name in STORED_TABLES}
    docs_dir = Path(docs_dir).resolve()
    report_path = Path(report_path) if report_path else docs_dir.parent / REPORT_NAME
    # Stale pages from an earlier run would stay in the site index: start from an empty site.
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    docs_dir.mkdir(parents=True)

    frames, skipped = _build_frames(tables, params)
    context = _context(docs_dir)
    datasource = context.data_sources.add_pandas("curated")
    outcomes: list[ExpectationOutcome] = []
    for frame in frames:
        batch = datasource.add_dataframe_asset(frame.name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=frame.name))
        for expectation, why in frame.expectations:
            expectation.notes = why  # rendered in Data Docs beside the expectation
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=frame.name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=frame.name,
                validation_definitions=[definition],
                # COMPLETE + index columns: failed rows come back with their ids.
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [frame.id_column]},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame.data})
        for suite_result in run.run_results.values():
            for r in suite_result.results:
                outcomes.append(_outcome(frame, r))
    # One site build for all frames. An UpdateDataDocsAction on each checkpoint re-rendered
    # the site index after every frame (measured: half of the docs time on 2 cores); the
    # checkpoints stored their results in the context, so one build renders every page.
    context.build_data_docs(site_names=[SITE_NAME])

    result = ValidationResult(
        success=all(o.success for o in outcomes),
        outcomes=outcomes,
        docs_path=docs_dir / "index.html",
        report_path=report_path,
        counts=_counts(tables, params),
        skipped=skipped,
    )
    _write_report(result)
    return result


def _outcome(frame: _Frame, r: Any) -> ExpectationOutcome:
    config = r.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or None
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    details = r.result or {}
    examples: list[str] = []
    for row in details.get("unexpected_index_list") or []:
        value = row.get(frame.id_column) if isinstance(row, dict) else row
        if str(value) not in examples:
            examples.append(str(value))
        if len(examples) >= MAX_EXAMPLES:
            break
    observed = details.get("observed_value")
    if not r.success and "exception_info" in r and r.exception_info.get("raised_exception"):
        observed = r.exception_info.get("exception_message")
    return ExpectationOutcome(
        table=frame.name,
        expectation=config.type,
        column=column,
        success=bool(r.success),
        unexpected_count=details.get("unexpected_count"),
        examples=examples,
        observed=_jsonable(observed),
        why=config.notes or "",
    )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def _counts(tables: dict[str, pd.DataFrame], params: "Params") -> dict[str, int]:
    counts = {name: int(len(df)) for name, df in tables.items()}
    prompts = tables["prompts"]
    if "split" in prompts.columns:
        split_counts = prompts["split"].value_counts()
        counts.update({f"prompts/{s}": int(split_counts.get(s, 0)) for s in schema.SPLITS})
        pairs = tables["pairs"]
        if {"prompt_id", "objective"} <= set(pairs.columns) and "prompt_id" in prompts.columns:
            for row in pair_count_frame(pairs, prompts, params.objective_names).itertuples():
                counts[f"pairs/{row.objective_split}"] = int(row.pair_count)
    return counts


def _write_report(result: ValidationResult) -> None:
    base = result.report_path.parent.resolve()
    payload = {
        "success": result.success,
        "expectations": len(result.outcomes),
        "failed": len(result.failures),
        "counts": result.counts,
        "skipped": result.skipped,
        "docs": os.path.relpath(result.docs_path, base),
        "results": [asdict(o) for o in result.outcomes],
    }
    result.report_path.parent.mkdir(parents=True, exist_ok=True)
    result.report_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def run(params: "Params", root: Path = Path(".")) -> ValidationResult:
    """Validate `root/<curate.out_dir>/*.parquet`; raise ValidationFailed on any failure.

    Data Docs go to `root/<validate.docs_dir>`, validation.json beside that folder.
    """
    root = Path(root)
    tables = read_tables(root / params.curate.out_dir)
    result = validate_tables(tables, params, root / params.validate_.docs_dir)
    if not result.success:
        raise ValidationFailed(result)
    return result


__all__: list[str] = [
    "ExpectationOutcome",
    "ValidationFailed",
    "ValidationResult",
    "read_tables",
    "run",
    "validate_tables",
]
