"""A corpus of hostile inputs, one kind per case: each bad row is quarantined with its
reason while the good rows around it are kept, and rows in == kept + quarantined holds
through the whole curate stage; each unreadable file is one clear error naming it.

Files are generated here (some are megabytes, or gzip bombs) rather than committed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from paretoflow.config import CurateConfig, Objective, Params, SourceConfig
from paretoflow.data import importers
from paretoflow.data.curate import run
from paretoflow.data.importers import SourceError, read_file

OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "harmlessness")]


def good_pair(i: int) -> dict:
    return {"prompt": f"How do I look after houseplant number {i} in a cold flat?",
            "chosen": f"Water plant {i} sparingly and keep it away from draughts.", "rejected": "No idea."}


def jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def hh(prompt: str, chosen: str, rejected: str, rejected_prompt: str | None = None) -> dict:
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {chosen}",
            "rejected": f"\n\nHuman: {rejected_prompt or prompt}\n\nAssistant: {rejected}"}


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


GOOD = [good_pair(i) for i in range(3)]
LONG_STRING = "x" * 5_000_000  # 5 MB without a single space: one "word"
DEEP = "[" * 100_000 + "]" * 100_000


@dataclass
class Kind:
    """One hostile input: a file (name, bytes), how to read it, what must happen."""

    name: str
    file: str
    content: Callable[[], bytes]
    reasons: dict[str, int]  # quarantine reasons expected, with counts
    kept: int
    source: dict = field(default_factory=lambda: {"format": "generic", "objective": "helpfulness"})


def _parquet(rows: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(rows), sink)
    return sink.getvalue()


KINDS = [
    Kind("5,000-digit integer", "big_int.jsonl",
         lambda: jsonl([*GOOD, b'{"prompt": "a", "chosen": "b", "rejected": "c", "margin": ' + b"9" * 5000 + b"}"]),
         {"number_too_long": 1}, 3),
    Kind("nesting 100,000 deep", "deep.jsonl",
         lambda: jsonl([*GOOD, ('{"prompt": "a", "chosen": "b", "rejected": "c", "x": ' + DEEP + "}").encode()]),
         {"malformed_json": 1}, 3),
    Kind("CSV cell over 131,072 characters", "huge_cell.csv",
         lambda: csv_bytes(["prompt", "chosen", "rejected"],
                           [list(good_pair(0).values()), ["q", "y" * 200_000, "z"], list(good_pair(1).values())]),
         {"field_too_long": 1}, 2),
    Kind("multi-MB string without spaces", "long_string.jsonl",
         lambda: jsonl([*GOOD, {"prompt": "a", "chosen": LONG_STRING, "rejected": "c"}]),
         {"field_too_long": 1}, 3),
    Kind("invalid UTF-8 line", "latin1.jsonl",
         lambda: jsonl([*GOOD, '{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}'.encode("latin-1")]),
         {"undecodable_bytes": 1}, 3),
    Kind("invalid UTF-8 CSV cell", "latin1.csv",
         lambda: csv_bytes(["prompt", "chosen", "rejected"], [list(good_pair(0).values())])
         + "caf\xe9,b,c\n".encode("latin-1"),
         {"undecodable_bytes": 1}, 1),
    Kind("lone surrogate escape", "surrogate.jsonl",
         lambda: jsonl([*GOOD, b'{"prompt": "a\\ud800", "chosen": "b", "rejected": "c"}']),
         {"undecodable_bytes": 1}, 3),
    Kind("NaN and Infinity numbers", "nan.jsonl",
         lambda: jsonl([*GOOD, b'{"prompt": "a", "chosen": "b", "rejected": "c", "margin": NaN}',
                        b'{"prompt": "d", "chosen": "e", "rejected": "f", "margin": Infinity}']),
         {"nan_value": 2}, 3),
    Kind("wrong types", "types.jsonl",
         lambda: jsonl([*GOOD, {"prompt": 42, "chosen": "b", "rejected": "c"},
                        {"prompt": "a", "chosen": ["b"], "rejected": "c"}, [1, 2, 3], "just a string"]),
         {"wrong_type": 4}, 3),
    Kind("malformed JSON line", "broken.jsonl",
         lambda: jsonl([*GOOD, b'{"prompt": "a", "chosen": "b", "rejected": ']),
         {"malformed_json": 1}, 3),
    Kind("CSV row with too many cells", "ragged.csv",
         lambda: csv_bytes(["prompt", "chosen", "rejected"], [list(good_pair(0).values()), ["a", "b", "c", "d"]]),
         {"malformed_row": 1}, 1),
    Kind("negative margin", "negative.jsonl",
         lambda: jsonl([*GOOD, {"prompt": "a", "chosen": "b", "rejected": "c", "margin": -2}]),
         {"negative_margin": 1}, 3),
    Kind("contradictory pairs A>B and B>A", "contradiction.jsonl",
         lambda: jsonl([*GOOD, {"prompt": "Pick one.", "chosen": "Apples.", "rejected": "Pears."},
                        {"prompt": "Pick one.", "chosen": "Pears.", "rejected": "Apples."}]),
         {"contradictory_pair": 2}, 3),
    Kind("conflicting duplicate margins", "margins.jsonl",
         lambda: jsonl([*GOOD, {"prompt": "Choose a fruit.", "chosen": "Apples.", "rejected": "Pears.", "margin": 1},
                        {"prompt": "Choose a fruit.", "chosen": "Apples.", "rejected": "Pears.", "margin": 3}]),
         {"conflicting_duplicate": 2}, 3),
    Kind("conflicting duplicate ratings", "ratings.jsonl",
         lambda: jsonl([{"prompt": "Rate a fruit.", "response": "Apples.", "rating": 0.9},
                        {"prompt": "Rate a fruit.", "response": "Apples.", "rating": 0.2},
                        {"prompt": "Rate a fruit.", "response": "Pears.", "rating": 0.5}]),
         {"conflicting_rating": 2}, 1),
    Kind("HH dialogues that differ before the last turn", "harmless-base.jsonl",
         lambda: jsonl([hh("How do I pick a lock?", "I can't help with that.", "Use a pin."),
                        hh("How do I bake bread?", "Knead, rise, bake.", "Buy some.", rejected_prompt="How do I bake?")]),
         {"prompt_mismatch": 1}, 1, {"format": "hh_rlhf"}),
    Kind("HH empty final response", "harmless-empty.jsonl",
         lambda: jsonl([hh("How do I pick a lock?", "I can't help with that.", "Use a pin."),
                        hh("Tell me a secret.", "", "No.")]),
         {"empty_text": 1}, 1, {"format": "hh_rlhf"}),
    Kind("Parquet string over the field cap", "long.parquet",
         lambda: _parquet({"prompt": ["a", "b"], "chosen": ["fine", LONG_STRING], "rejected": ["c", "d"]}),
         {"field_too_long": 1}, 1),
    Kind("TSV with a bad row", "pairs.tsv",
         lambda: b"prompt\tchosen\trejected\n" + "\t".join(good_pair(0).values()).encode() + b"\n\tb\tc\n",
         {"missing_field": 1}, 1),
    Kind("gzipped CSV with a bad row", "pairs.csv.gz",
         lambda: gzip.compress(csv_bytes(["prompt", "chosen", "rejected"],
                                         [list(good_pair(0).values()), ["a", "same", "same"]])),
         {"chosen_equals_rejected": 1}, 1),
]


def params_for(kind: Kind) -> Params:
    return Params(objectives=OBJECTIVES, curate=CurateConfig(
        sources=[SourceConfig(path=kind.file, **kind.source)], out_dir="curated"))


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_bad_row_is_quarantined_and_every_row_is_counted(tmp_path, kind):
    (tmp_path / kind.file).write_bytes(kind.content())
    report = run(params_for(kind), tmp_path).report
    source = report["sources"][kind.file]
    assert source["rows_in"] == source["rows_kept"] + source["rows_quarantined"]
    assert source["reasons"] == kind.reasons
    assert source["rows_kept"] == kind.kept


def test_the_corpus_is_at_least_sixteen_kinds():
    assert len({k.name for k in KINDS}) >= 16


def test_a_row_failing_in_an_unforeseen_way_is_quarantined_with_the_exception(tmp_path, monkeypatch):
    from paretoflow.data.formats import hh_rlhf

    real = hh_rlhf.parse_hh

    def flaky(row, objective):
        if "lock" in row["chosen"]:
            raise ZeroDivisionError("a parser bug")
        return real(row, objective)

    monkeypatch.setattr(hh_rlhf, "parse_hh", flaky)
    path = tmp_path / "harmless-base.jsonl"
    path.write_bytes(jsonl([hh("How do I pick a lock?", "No.", "Use a pin."), hh("Hi?", "Hello!", "Go away.")]))
    imported = read_file(path, OBJECTIVES)
    assert len(imported.records) == 1
    (bad,) = imported.quarantined
    assert (bad.reason, bad.location) == ("unexpected_error", "line 1") and "ZeroDivisionError: a parser bug" in bad.detail


# Wholly unreadable files: one clear error naming the file.


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, message", [
    ("corrupt.jsonl.gz", b"\x1f\x8b\x08\x00 this is not deflate data at all", "not a readable gzip file"),
    ("garbage.jsonl.gz", b"plain text, not gzip", "not a readable gzip file"),
    ("truncated.jsonl.gz", gzip.compress(jsonl(GOOD * 50))[:200], "not a readable gzip file.*EOFError"),
    ("binary.jsonl", bytes(range(256)) * 8, "binary data"),
    ("not_json.jsonl", b"a,b,c\n1,2,3\n", "no line parses as JSON"),
    ("deep_array.json", b"[" + DEEP.encode() + b"]", "starts with '\\[' but is not a readable JSON array"),
])
def test_corrupt_file_is_one_error_naming_it(tmp_path, name, data, message):
    path = _write(tmp_path, name, data)
    with pytest.raises(SourceError, match=f"{name}: {message}"):
        read_file(path, OBJECTIVES, format="generic", objective="helpfulness")


def test_truncated_parquet_is_one_error_naming_it(tmp_path):
    whole = _parquet({"prompt": ["a"] * 100, "chosen": ["b"] * 100, "rejected": ["c"] * 100})
    path = _write(tmp_path, "cut.parquet", whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="cut.parquet: not a readable Parquet file"):
        read_file(path, OBJECTIVES)


def test_gzip_bomb_stops_at_the_file_cap(tmp_path):
    # 64 MiB of zeros compress to ~64 KiB; reading stops after the 1 MiB cap.
    bomb = _write(tmp_path, "bomb.jsonl.gz", gzip.compress(b"\n" * (64 << 20), compresslevel=9))
    assert bomb.stat().st_size < 200_000
    limits = importers.Limits(max_file_bytes=1 << 20)
    with pytest.raises(SourceError, match=r"bomb.jsonl.gz: more than 1,048,576 bytes .*curate.max_file_bytes"):
        read_file(bomb, OBJECTIVES, limits=limits)


def test_file_caps_apply_to_plain_files_and_parquet(tmp_path):
    limits = importers.Limits(max_file_bytes=10_000)
    big = _write(tmp_path, "big.jsonl", jsonl(GOOD * 200))
    with pytest.raises(SourceError, match="big.jsonl: more than 10,000 bytes"):
        read_file(big, OBJECTIVES, limits=limits)
    table = _write(tmp_path, "big.parquet", _parquet({"prompt": [f"{i} " + "a" * 100 for i in range(1000)]}))
    with pytest.raises(SourceError, match="big.parquet: more than 10,000 bytes"):
        read_file(table, OBJECTIVES, limits=limits)


def test_field_cap_is_configurable_and_reported(tmp_path):
    (tmp_path / "pairs.jsonl").write_bytes(jsonl([*GOOD, {"prompt": "a", "chosen": "b" * 300, "rejected": "c"}]))
    kind = Kind("", "pairs.jsonl", lambda: b"", {}, 0)
    params = params_for(kind)
    params = params.model_copy(update={"curate": params.curate.model_copy(update={"max_field_chars": 200})})
    report = run(params, tmp_path).report
    assert report["reasons"] == {"field_too_long": 1}
    assert report["limits"] == {"max_file_bytes": 1 << 30, "max_field_chars": 200}
    q = __import__("pandas").read_parquet(tmp_path / "curated" / "quarantine.parquet")
    assert "300 characters > curate.max_field_chars 200" in q["detail"].iloc[0]


def test_folder_source_lists_skipped_files(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(GOOD))
    (folder / "b.csv.gz").write_bytes(gzip.compress(csv_bytes(["prompt", "chosen", "rejected"],
                                                              [list(good_pair(9).values())])))
    (folder / "notes.txt").write_text("not data")
    (folder / "c.xlsx").write_bytes(b"PK")
    params = Params(objectives=OBJECTIVES, curate=CurateConfig(
        sources=[SourceConfig(path="raw", format="generic", objective="helpfulness")], out_dir="curated"))
    report = run(params, tmp_path).report
    assert set(report["sources"]) == {"raw/a.jsonl", "raw/b.csv.gz"}
    assert report["skipped_files"] == {"raw": ["raw/c.xlsx", "raw/notes.txt"]}
    assert report["rows_kept"] == 4


def test_reason_counts_add_up_across_the_corpus(tmp_path):
    """All kinds as one folder source: the identity holds over the whole corpus too."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    sources = []
    for kind in KINDS:
        (folder / kind.file).write_bytes(kind.content())
        sources.append(SourceConfig(path=f"corpus/{kind.file}", **kind.source))
    params = Params(objectives=OBJECTIVES, curate=CurateConfig(sources=sources, out_dir="curated"))
    report = run(params, tmp_path).report
    assert report["rows_in"] == report["rows_kept"] + report["rows_quarantined"]
    expected = Counter()
    for kind in KINDS:
        expected.update(kind.reasons)
    # Kinds share no prompt except the GOOD rows' (exact duplicates across files).
    got = Counter(report["reasons"])
    duplicates = got.pop("duplicate", 0)
    assert got == expected
    assert duplicates == sum(k.kept for k in KINDS) - report["rows_kept"]


def test_parquet_whose_rows_decode_past_the_cap_stops(tmp_path):
    # One value repeated: dictionary-encoded, the file and its declared size stay small,
    # but the decoded rows would not; reading stops once they pass the cap.
    path = _write(tmp_path, "repeated.parquet", _parquet({"prompt": ["p" * 5000] * 20_000}))
    assert path.stat().st_size < 50_000
    with pytest.raises(SourceError, match="repeated.parquet: more than 1,000,000 bytes"):
        read_file(path, OBJECTIVES, limits=importers.Limits(max_file_bytes=1_000_000))
