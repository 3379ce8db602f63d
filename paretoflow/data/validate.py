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
SQL only), hence the derived frames (`checks.py`); the suites are `expectations.py`. `import great_expectations` costs ~4 s, so it is
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
from paretoflow.data.checks import pair_count_frame, prompt_content_frame  # noqa: F401  (re-exported)
from paretoflow.data.expectations import FLOAT_COLUMNS, _build_frames, _Frame  # noqa: F401
from paretoflow.io import atomic_dir, files_hash, inside, read_json, write_json, write_text

if TYPE_CHECKING:
    from paretoflow.config import Params

STORED_TABLES = ("prompts", "responses", "ratings", "pairs", "quarantine")
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
