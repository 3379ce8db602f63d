"""The curate stage: raw preference files → the canonical tables, deduplicated,
decontaminated and split by prompt (`paretoflow/data/`); bad rows to quarantine.

Config: `CurateConfig` (params.yaml `curate`). Entry: `run(params, root)`. CLI:
`paretoflow curate`.
"""

from __future__ import annotations

import argparse
import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from paretoflow.sections import ProjectPath, _Section
from paretoflow.stages.base import CURATED_TABLES, Stage, curated

if TYPE_CHECKING:
    from collections.abc import Sequence

    from paretoflow.config import Params
    from paretoflow.data.curate import CurateResult


class SourceConfig(_Section):
    """One raw input file or folder and how to read it.

    `path` is relative to the project root and must stay inside it; a folder outside is
    read only under a data root named in PARETOFLOW_DATA_ROOTS (paretoflow/data/importers.py).
    """

    path: str = Field(min_length=1)
    # "auto" (detected from the first readable record) or a format of the registry,
    # paretoflow/data/formats/ (one module per format).
    format: str = "auto"
    # HH-RLHF: which objective the file's chosen/rejected speaks for; None = from file name.
    objective: str | None = None
    # Generic importer: canonical field -> column name in the file.
    column_map: dict[str, str] = Field(default_factory=dict)
    # Role of the prompts of this source: "train" prompts get split, "eval" are held out.
    role: Literal["train", "eval"] = "train"
    # Prompt-grouped sample: keep every row of the `max_prompts` prompts with the smallest
    # sha256(sample_seed, prompt_id) (a hash independent of the split's), None = all. Adding
    # rows never swaps one kept prompt for another except to admit a smaller hash.
    max_prompts: int | None = Field(None, ge=1)
    sample_seed: int = 0
    # Tags added to every prompt of this source, e.g. `red_team` for HH-RLHF harmless-base
    # (red-team attempts: harm is possible there, so a refusal may be the right answer).
    tags: list[str] = Field(default_factory=list)
    # Text encoding of the source's JSON / CSV / TSV files, as Python's codecs name it:
    # "utf-8" (the default), "cp1252" (Excel's "CSV" on Windows), "latin-1", "utf-16"...
    # Transcoded to UTF-8 as the file streams; Parquet's strings are UTF-8 by its spec.
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            return codecs.lookup(v).name  # one spelling per codec: "UTF8", "utf_8" -> "utf-8"
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (a Python codec name, e.g. utf-8, cp1252, latin-1)") from None

    @field_validator("format")
    @classmethod
    def _registered(cls, v: str) -> str:
        from paretoflow.data.formats import check_format   # the registry's names: no pandas, no pyarrow

        return check_format(v)


class CurateConfig(_Section):
    out_dir: ProjectPath = "data/curated"
    sources: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="data/raw/prompts", format="builtin")]
    )
    # MinHash LSH near-duplicate removal (datasketch). 128 permutations: datasketch default;
    # Jaccard 0.8 over word 3-shingles: the usual near-dup setting (Lee et al. 2022 used 0.8).
    minhash_num_perm: int = Field(128, ge=16)
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    shingle_size: int = Field(3, ge=1)
    # Decontamination: a training prompt sharing >= this fraction of its word 8-grams with
    # any held-out eval prompt is dropped (8-grams: GPT-3/Tulu-style n-gram overlap checks).
    decontam_ngram: int = Field(8, ge=1)
    decontam_threshold: float = Field(0.5, gt=0.0, le=1.0)
    # Hash-based prompt-disjoint split; fractions sum to 1.
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1}
    )
    # Whitespace-token bounds on prompt and response text (measured on built-in data: the
    # longest built-in prompt is well under 200 words; 2048 keeps HH dialogues).
    min_words: int = Field(1, ge=0)
    max_words: int = Field(2048, ge=1)
    # Size caps per file (bytes of decompressed content; gzip stops inflating there) and per
    # field (characters, any string of a row). 1 GiB: the whole UltraFeedback JSONL is
    # ~0.9 GB; 100,000 characters: 12x the longest text of the shipped data (AlpacaEval,
    # 8,103) and above max_words x ~6 characters a word; a multi-MB string is caught.
    max_file_bytes: int = Field(1 << 30, ge=1)
    max_field_chars: int = Field(100_000, ge=1)
    # Rows per file, checked while reading (before parsing for JSON Lines, from the footer
    # for Parquet). 2,000,000: above HH-RLHF (160k) and PKU-SafeRLHF (330k) per file, and
    # below what the in-memory curate path holds in 24 GB (bench/curation.py measures the
    # memory per row); a bigger file is an error naming this setting, not an OOM.
    max_file_rows: int = Field(2_000_000, ge=1)
    # Chat-template control tokens inside data (<|im_start|>, [INST], </s>, ...; the list is
    # in paretoflow/data/control.py): "escape" keeps the row with the token made inert,
    # "quarantine" drops it (control_token). Escape by default: HH-RLHF/AlpacaEval texts
    # quote such markup in code answers, and escaped it cannot open a turn.
    control_tokens: Literal["escape", "quarantine"] = "escape"

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"train", "val", "test"}:
            raise ValueError(f"split_fractions needs exactly train/val/test, got {sorted(v)}")
        if any(f < 0 for f in v.values()) or abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {v}")
        return v


def check(params: Params) -> None:
    """Nothing to check at load: a source's undeclared `objective` is a per-row outcome
    (rows quarantined as unknown_objective, counted in the report), not a config error."""


def run(params: Params, root: Path, *, progress: bool = False,
        data_roots: Sequence[Path] | None = None) -> CurateResult:
    """Read params.curate.sources under root, write <curate.out_dir>/* as one unit."""
    from paretoflow.data.curate import run as curate_project

    return curate_project(params, Path(root), progress=progress, data_roots=data_roots)


STAGE = Stage(
    name="curate",
    run=run,
    command="paretoflow curate",
    sections=("objectives", "curate"),
    inputs=lambda p: [s.path for s in p.curate.sources],
    # Listed file by file: Data Docs and validation.json in the same folder belong to validate.
    outputs=lambda p: [*curated(p, *CURATED_TABLES, "quarantine"), f"{p.curate.out_dir}/report.json"],
    artifacts=lambda p: [f"{p.curate.out_dir}/report.json", f"{p.curate.out_dir}/quarantine.parquet"],
    summary="importers → canonical tables; normalize, exact + MinHash-LSH dedup, decontaminate, split by prompt",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("curate", help="run the curate stage over params.curate.sources")
    parser.add_argument("--root", default=".", help="folder the params paths are relative to")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from paretoflow.data.curate import report_table

    result = run(args.load_params(), Path(args.root), progress=True)
    print(report_table(result.report, result.paths["quarantine"]))
    print(f"wrote {result.out_dir}")
    return 0
