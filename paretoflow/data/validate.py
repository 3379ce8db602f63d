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
  (objective, split) >= `min_pairs_per_objective_split` (one number, or one per
  objective; pairs take their prompt's split); metadata columns hold JSON objects.

The verdict is tied to the data: validation.json records `data_hash` (the content hash of
the four canonical tables, `paretoflow.io.files_hash`, the same as the lineage tag) and
the hash of the params it applied; `verdict(params, root)` refuses a report for other
tables or params (StaleVerdict). Writes are atomic and in order: the Data Docs site is
rendered into a temporary sibling folder that replaces docs_dir in one rename, and
validation.json is written last. Only a docs folder validate created (it holds
DOCS_MARKER) is ever replaced; docs_dir and curate.out_dir must resolve inside the root.

Cross-table checks are not native GE expectations on pandas (UnexpectedRowsExpectation is
SQL only), hence the derived frames. `import great_expectations` costs ~4 s, so it is
imported inside the functions that need it; importing paretoflow stays fast.

Run: `paretoflow validate` (CLI), `dvc repro validate`, or the Prefect task.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from paretoflow import schema
from paretoflow.io import atomic_dir, files_hash, inside, read_json, write_json, write_text

if TYPE_CHECKING:
    from paretoflow.config import Params

STORED_TABLES = ("prompts", "responses", "ratings", "pairs", "quarantine")
FLOAT_COLUMNS = ("value", "scale_min", "scale_max", "margin")
REPORT_NAME = "validation.json"
# Written into every Data Docs folder validate creates: only such a folder is ever replaced.
DOCS_MARKER = ".paretoflow-data-docs"
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
    data_hash: str | None = None  # content hash of the curated tables validated (data_hash())
    params_hash: str | None = None  # verdict_params_hash(params)

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
    """The five curated Parquet tables; a missing file is an error naming the path. No
    column is required here: the gate reports missing or extra columns itself."""
    tables = {}
    for name in STORED_TABLES:
        path = curated_dir / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"curated table not found: {path} (run `paretoflow curate` first)")
        tables[name] = schema.read(name, path, required=[])
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


def _metadata_well_formed(value: Any) -> bool:
    return isinstance(_parse_json(value), dict)


def rating_link_frame(ratings: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    known = set(responses["response_id"])
    rows = [
        {"rating": f"{r}|{o}|{w}", "response_known": r in known, "metadata_well_formed": _metadata_well_formed(m)}
        for r, o, w, m in zip(ratings["response_id"], ratings["objective"], ratings["rater"], ratings["metadata"])
    ]
    return _typed(rows, ["rating", "response_known", "metadata_well_formed"])


def pair_link_frame(pairs: pd.DataFrame, responses: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    prompt_of = dict(zip(responses["response_id"], responses["prompt_id"]))
    known_prompts = set(prompts["prompt_id"])
    rows = []
    for pid, prompt, chosen, rejected, objective, metadata in zip(
        pairs["pair_id"], pairs["prompt_id"], pairs["chosen_id"], pairs["rejected_id"], pairs["objective"],
        pairs["metadata"],
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
                "metadata_well_formed": _metadata_well_formed(metadata),
            }
        )
    return _typed(rows, ["pair_id", "prompt_known", "chosen_known", "rejected_known",
                         "chosen_answers_prompt", "rejected_answers_prompt", "id_matches_content",
                         "metadata_well_formed"])


def pair_count_frame(pairs: pd.DataFrame, prompts: pd.DataFrame, objective_names: list[str],
                     min_pairs: dict[str, int] | None = None) -> pd.DataFrame:
    """Pairs per (objective, split), every declared objective × split present (zero-filled),
    beside the minimum asked for that objective (`min_pairs`, 0 where absent)."""
    split_of = dict(zip(prompts["prompt_id"], prompts["split"]))
    splits = pairs["prompt_id"].map(split_of)
    counts = pd.DataFrame({"objective": pairs["objective"], "split": splits}).value_counts()
    minimum = min_pairs or {}
    rows = [
        {"objective_split": f"{o}/{s}", "pair_count": int(counts.get((o, s), 0)), "min_pairs": int(minimum.get(o, 0))}
        for o in objective_names
        for s in schema.SPLITS
    ]
    df = _typed(rows, ["objective_split", "pair_count", "min_pairs"])
    df["min_pairs"] = df["min_pairs"].astype("int64")
    return df


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


def _columns_ok(tables: dict[str, pd.DataFrame], name: str) -> bool:
    return set(schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)) <= set(tables[name].columns)


def _not_null(gxe: Any, *columns: str) -> list[tuple[Any, str]]:
    return [(gxe.ExpectColumnValuesToNotBeNull(column=c), "required") for c in columns]


def _all_true(gxe: Any, why: dict[str, str]) -> list[tuple[Any, str]]:
    return [(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), text) for c, text in why.items()]


def _stored_frame(gxe: Any, tables: dict[str, pd.DataFrame], name: str, id_column: str,
                  extra: list[tuple[Any, str]]) -> _Frame:
    """A stored table: exact canonical columns and dtypes, then `extra` if the columns hold."""
    columns = schema.TABLES.get(name, schema.QUARANTINE_COLUMNS)
    exps: list[tuple[Any, str]] = [
        (gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True), "canonical columns")
    ]
    if _columns_ok(tables, name):
        for c in columns:
            type_ = "float64" if c in FLOAT_COLUMNS else "str"
            exps.append((gxe.ExpectColumnValuesToBeOfType(column=c, type_=type_), "canonical dtype"))
        exps += extra
    return _Frame(name, tables[name], id_column, exps)


def _rating_checks(gxe: Any, params: "Params") -> list[tuple[Any, str]]:
    from great_expectations.expectations.row_conditions import Column

    checks: list[tuple[Any, str]] = [
        *_not_null(gxe, "response_id", "objective", "value", "scale_min", "scale_max", "rater"),
        (gxe.ExpectCompoundColumnsToBeUnique(column_list=["response_id", "objective", "rater"]),
         "one rating per response, objective and rater"),
        (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=params.objective_names), "declared objectives"),
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
        checks.append((
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=low, max_value=high, row_condition=condition),
            f"{objective.name} ratings on its declared scale [{low}, {high}]",
        ))
    return checks


def _stored_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> list[_Frame]:
    objectives = params.objective_names
    return [
        _stored_frame(gxe, tables, "prompts", "prompt_id", [
            *_not_null(gxe, "prompt_id", "messages", "text", "split", "tags"),
            (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "content-hash id"),
            (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(schema.SPLITS)), "declared splits"),
        ]),
        _stored_frame(gxe, tables, "responses", "response_id", [
            *_not_null(gxe, "response_id", "prompt_id", "text", "origin"),
            (gxe.ExpectColumnValuesToBeUnique(column="response_id"), "content-hash id"),
        ]),
        _stored_frame(gxe, tables, "ratings", "response_id", _rating_checks(gxe, params)),
        _stored_frame(gxe, tables, "pairs", "pair_id", [
            *_not_null(gxe, "pair_id", "prompt_id", "chosen_id", "rejected_id", "objective", "source"),
            (gxe.ExpectColumnValuesToBeUnique(column="pair_id"), "content-hash id"),
            (gxe.ExpectColumnValuesToBeInSet(column="objective", value_set=objectives), "declared objectives"),
            (gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=["chosen_id", "rejected_id"]),
             "chosen_id != rejected_id"),
            (gxe.ExpectColumnValuesToBeBetween(column="margin", min_value=0.0), "chosen is not rated below rejected"),
        ]),
        _stored_frame(gxe, tables, "quarantine", "location", [*_not_null(gxe, "source", "reason")]),
    ]


def _prompt_frames(gxe: Any, prompts: pd.DataFrame, cfg: Any) -> list[_Frame]:
    return [
        _Frame("prompts_content", prompt_content_frame(prompts), "prompt_id", [
            *_all_true(gxe, {
                "messages_well_formed": "JSON list of {role, content}, last turn from the user",
                "text_is_last_user_turn": "text equals the last user turn",
                "id_matches_content": "prompt_id == schema.prompt_id(messages)",
                "tags_well_formed": "JSON list of strings",
            }),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", min_value=1, max_value=cfg.max_words),
             f"1..{cfg.max_words} words"),
        ]),
        _Frame("prompt_splits", prompt_split_frame(prompts), "prompt_id", [
            (gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), "no prompt_id shared across splits"),
        ]),
        _Frame("split_counts", split_count_frame(prompts), "split", [
            (gxe.ExpectColumnValuesToBeBetween(column="prompt_count", min_value=cfg.min_prompts_per_split),
             f"at least {cfg.min_prompts_per_split} prompts per split"),
        ]),
    ]


def _pair_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> list[_Frame]:
    return [
        _Frame("pairs_links", pair_link_frame(tables["pairs"], tables["responses"], tables["prompts"]), "pair_id",
               _all_true(gxe, {
                   "prompt_known": "prompt_id exists in prompts",
                   "chosen_known": "chosen_id exists in responses",
                   "rejected_known": "rejected_id exists in responses",
                   "chosen_answers_prompt": "chosen response belongs to the pair's prompt",
                   "rejected_answers_prompt": "rejected response belongs to the pair's prompt",
                   "id_matches_content": "pair_id == schema.pair_id(prompt, chosen, rejected, objective)",
                   "metadata_well_formed": "metadata is a JSON object",
               })),
        _Frame("pair_counts", pair_count_frame(tables["pairs"], tables["prompts"], params.objective_names,
                                               {o: params.validate_.min_pairs(o) for o in params.objective_names}),
               "objective_split", [
            (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pair_count", column_B="min_pairs", or_equal=True),
             "at least validate.min_pairs_per_objective_split pairs per objective and split"),
        ]),
    ]


def _derived_frames(gxe: Any, tables: dict[str, pd.DataFrame], params: "Params") -> tuple[list[_Frame], list[str]]:
    """Cross-row and cross-table frames, each only when the columns it reads exist."""
    cfg = params.validate_
    frames: list[_Frame] = []
    skipped: list[str] = []
    prompts_ok, responses_ok = _columns_ok(tables, "prompts"), _columns_ok(tables, "responses")
    if prompts_ok:
        frames += _prompt_frames(gxe, tables["prompts"], cfg)
    else:
        skipped += ["prompts_content", "prompt_splits", "split_counts"]
    if prompts_ok and responses_ok:
        frames.append(_Frame("responses_links", response_link_frame(tables["responses"], tables["prompts"]),
                             "response_id", [
            *_all_true(gxe, {"prompt_known": "prompt_id exists in prompts",
                             "id_matches_content": "response_id == schema.response_id(prompt_id, text)"}),
            (gxe.ExpectColumnValuesToBeBetween(column="word_count", max_value=cfg.max_words),
             f"at most {cfg.max_words} words"),
        ]))
    else:
        skipped.append("responses_links")
    if responses_ok and _columns_ok(tables, "ratings"):
        frames.append(_Frame("ratings_links", rating_link_frame(tables["ratings"], tables["responses"]), "rating",
                             _all_true(gxe, {"response_known": "response_id exists in responses",
                                             "metadata_well_formed": "metadata is a JSON object"})))
    else:
        skipped.append("ratings_links")
    if prompts_ok and responses_ok and _columns_ok(tables, "pairs"):
        frames += _pair_frames(gxe, tables, params)
    else:
        skipped += ["pairs_links", "pair_counts"]
    return frames, skipped


def _build_frames(tables: dict[str, pd.DataFrame], params: "Params") -> tuple[list[_Frame], list[str]]:
    import great_expectations.expectations as gxe

    unknown = set(_min_pairs_map(params)) - set(params.objective_names)
    if unknown:
        raise ValueError(f"validate.min_pairs_per_objective_split names undeclared objectives {sorted(unknown)} "
                         f"(declared: {params.objective_names})")
    derived, skipped = _derived_frames(gxe, tables, params)
    return _stored_frames(gxe, tables, params) + derived, skipped


def _min_pairs_map(params: "Params") -> dict[str, int]:
    v = params.validate_.min_pairs_per_objective_split
    return dict(v) if isinstance(v, dict) else {}


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


def _check_docs_dir(docs_dir: Path) -> None:
    """Only a folder this project created (it holds DOCS_MARKER) may be replaced."""
    if docs_dir.exists() and not (docs_dir.is_dir() and (docs_dir / DOCS_MARKER).is_file()):
        raise ValueError(
            f"validate.docs_dir {docs_dir} exists but was not created by `paretoflow validate` (no "
            f"{DOCS_MARKER} inside); refusing to replace it. Point docs_dir at a new folder, or remove "
            "this one yourself if it is an old Data Docs site."
        )


def _run_suites(frames: list[_Frame], site_dir: Path) -> list[ExpectationOutcome]:
    """Validate every frame in one ephemeral GE context and render Data Docs into site_dir."""
    import great_expectations as gx

    context = _context(site_dir)
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
            outcomes += [_outcome(frame, r) for r in suite_result.results]
    # One site build for all frames. An UpdateDataDocsAction on each checkpoint re-rendered
    # the site index after every frame (measured: half of the docs time on 2 cores); the
    # checkpoints stored their results in the context, so one build renders every page.
    context.build_data_docs(site_names=[SITE_NAME])
    return outcomes


def validate_tables(
    tables: dict[str, pd.DataFrame],
    params: "Params",
    docs_dir: Path,
    report_path: Path | None = None,
    data_hash: str | None = None,
) -> ValidationResult:
    """Validate in-memory canonical tables; write Data Docs and validation.json; never raise
    on failed expectations (`run` does). Missing tables count as empty ones.

    The site is rendered into a temporary sibling folder (holding DOCS_MARKER) that
    replaces `docs_dir` in one rename; an existing `docs_dir` without the marker is an
    error and nothing is deleted. validation.json is written last, atomically, with
    `data_hash` (the curated tables' content hash) when given.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    tables = {name: tables[name] if name in tables else schema.empty_table(name) for name in STORED_TABLES}
    docs_dir = Path(docs_dir).resolve()
    report_path = Path(report_path) if report_path else docs_dir.parent / REPORT_NAME
    _check_docs_dir(docs_dir)
    frames, skipped = _build_frames(tables, params)
    with atomic_dir(docs_dir) as site_dir:  # stale pages never survive: a new site replaces the old
        write_text(site_dir / DOCS_MARKER, "Data Docs written by `paretoflow validate`; the folder is "
                                           "replaced on every run.\n")
        outcomes = _run_suites(frames, site_dir)
    result = ValidationResult(
        success=all(o.success for o in outcomes),
        outcomes=outcomes,
        docs_path=docs_dir / "index.html",
        report_path=report_path,
        counts=_counts(tables, params),
        skipped=skipped,
        data_hash=data_hash,
        params_hash=verdict_params_hash(params),
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
        "data_hash": result.data_hash,
        "data_tables": [f"{t}.parquet" for t in schema.TABLES],
        "params_hash": result.params_hash,
        "expectations": len(result.outcomes),
        "failed": len(result.failures),
        "counts": result.counts,
        "skipped": result.skipped,
        "docs": os.path.relpath(result.docs_path, base),
        "results": [asdict(o) for o in result.outcomes],
    }
    write_json(result.report_path, payload, sort_keys=True)


# ---------------------------------------------------------------------------------------
# The stage and its verdict


def data_hash(curated_dir: Path) -> str:
    """Content hash of the canonical tables in `curated_dir`: the same files and hash as
    the lineage tag paretoflow.data_hash (paretoflow/tracking.py)."""
    return files_hash([Path(curated_dir) / f"{t}.parquet" for t in schema.TABLES])


def verdict_params_hash(params: "Params") -> str:
    """The params a verdict depends on: the objectives and the validate section."""
    return params.section_hash("objectives", "validate")


def paths(params: "Params", root: Path) -> tuple[Path, Path, Path]:
    """(curated dir, docs dir, validation.json), resolved and checked inside root."""
    curated = inside(root, params.curate.out_dir, what="curate.out_dir")
    docs = inside(root, params.validate_.docs_dir, what="validate.docs_dir")
    return curated, docs, docs.parent / REPORT_NAME


def run(params: "Params", root: Path = Path(".")) -> ValidationResult:
    """Validate `root/<curate.out_dir>/*.parquet`; raise ValidationFailed on any failure.

    Data Docs go to `root/<validate.docs_dir>`, validation.json beside that folder; both
    paths must resolve inside root (symlinks followed), else nothing is read or deleted.
    """
    curated_dir, docs_dir, report_path = paths(params, Path(root))
    digest = data_hash(curated_dir)  # before reading: the verdict names what was read
    tables = read_tables(curated_dir)
    check_curate_report(curated_dir, tables)
    result = validate_tables(tables, params, docs_dir, report_path, data_hash=digest)
    if not result.success:
        raise ValidationFailed(result)
    return result


class InconsistentCuratedData(ValueError):
    """The curated folder's report.json and its tables disagree: not one curate run."""


def check_curate_report(curated_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Refuse tables whose row counts differ from the report.json curate wrote beside
    them (tables of one run beside the report of another: a half-written or hand-edited
    folder). A folder without report.json (tables written by other tools) is not checked."""
    report_path = Path(curated_dir) / "report.json"
    if not report_path.exists():
        return
    report = read_json(report_path)
    expected = dict(report.get("tables") or {})
    expected["quarantine"] = report.get("rows_quarantined")
    wrong = [f"{name}.parquet holds {len(tables[name]):,} rows, report.json says {n!r}"
             for name, n in sorted(expected.items()) if name in tables and n != len(tables[name])]
    if wrong:
        raise InconsistentCuratedData(f"{curated_dir}: the tables and report.json disagree ({'; '.join(wrong)}): "
                                      "not the output of one curate run; rerun `paretoflow curate`")


class StaleVerdict(ValueError):
    """validation.json judged other data (or other validate params) than what is on disk."""


def verdict(params: "Params", root: Path) -> bool:
    """The recorded verdict on the curated tables *now on disk*: True/False as validated;
    raises StaleVerdict when the report judged other tables or params, FileNotFoundError
    when there is none."""
    curated_dir, _, report_path = paths(params, Path(root))
    if not report_path.exists():
        raise FileNotFoundError(f"no validation report at {report_path} (run `paretoflow validate` first)")
    report = read_json(report_path)
    current = data_hash(curated_dir)
    if report.get("data_hash") != current:
        raise StaleVerdict(f"{report_path} validated data {report.get('data_hash')}, but the curated tables in "
                           f"{curated_dir} now hash to {current}: rerun `paretoflow validate`")
    if report.get("params_hash") != verdict_params_hash(params):
        raise StaleVerdict(f"{report_path} was written under other objectives/validate params: "
                           "rerun `paretoflow validate`")
    return bool(report.get("success"))


__all__: list[str] = [
    "ExpectationOutcome",
    "InconsistentCuratedData",
    "StaleVerdict",
    "ValidationFailed",
    "ValidationResult",
    "data_hash",
    "read_tables",
    "run",
    "validate_tables",
    "verdict",
]
