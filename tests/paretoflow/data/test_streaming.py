"""Streaming readers (issue 22): lines from chunks equal a whole-file split, caps bind
while streaming, repeated lines are quarantined in file order among the other rows."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from paretoflow.config import Objective, Params, SourceConfig
from paretoflow.data import readers
from paretoflow.data.curate import curate
from paretoflow.data.importers import Limits, SourceError, read_file

OBJECTIVES = [Objective(name="helpfulness")]


def test_stream_lines_equal_a_split_of_the_whole_content():
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 60)))
        cuts = sorted(rng.sample(range(len(data) + 1), rng.randint(0, min(5, len(data) + 1))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
        assert list(readers.stream_lines(iter(chunks))) == list(enumerate(data.split(b"\n"), start=1))


def test_small_chunks_read_the_same_rows(tmp_path, monkeypatch):
    lines = [json.dumps({"prompt": f"question {i} " + "x" * (i * 7)}) for i in range(50)]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    whole = [(r.location, r.value) for r in readers.read_rows(path)]
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 7)
    assert [(r.location, r.value) for r in readers.read_rows(path)] == whole
    assert len(whole) == 50


def test_json_array_told_from_json_lines_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 5)
    array = tmp_path / "a.json"
    array.write_text('\n  [\n {"prompt": "one"},\n {"prompt": "two"}\n]\n')
    assert [r.location for r in readers.read_rows(array)] == ["item 1", "item 2"]
    lines = tmp_path / "l.json"
    lines.write_text('["a list", "first"]\n{"prompt": "two"}\n')
    assert [r.location for r in readers.read_rows(lines)] == ["line 1", "line 2"]


@pytest.mark.parametrize(("name", "line"), [("big.jsonl.gz", b'{"prompt": "same"}\n'), ("big.csv.gz", b"same,x\n")])
def test_gzip_cap_binds_while_streaming(tmp_path, monkeypatch, name, line):
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 1 << 10)
    path = tmp_path / name
    with gzip.open(path, "wb") as fh:
        fh.write((b"prompt,chosen\n" if name.endswith(".csv.gz") else b"") + line * 10_000)
    with pytest.raises(SourceError, match="more than 50,000 bytes of content"):
        read_file(path, OBJECTIVES, format="builtin", limits=Limits(max_file_bytes=50_000))


def test_repeated_lines_are_quarantined_in_file_order_among_other_rows(tmp_path):
    lines = ['{"prompt": "kept one"}', "not json", '{"prompt": "kept one"}', '{"prompt": ""}',
             '{"prompt": "kept one"}', "not json", '{"prompt": "kept two"}', '{"prompt": "kept two"}']
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    params = Params(objectives=OBJECTIVES, curate={"sources": [SourceConfig(path="p.jsonl", format="builtin")]})
    curated = curate(params, tmp_path)
    q = curated.quarantine
    assert list(q["location"]) == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 8"]
    assert list(q["reason"]) == ["malformed_json", "duplicate", "empty_text", "duplicate", "duplicate", "duplicate"]
    assert list(q["detail"])[1] == "same bytes as line 1" and list(q["detail"])[4] == "same bytes as line 2"
    assert list(q["raw"])[3] == lines[0] and list(q["raw"])[5] == lines[6]
    report = curated.report
    assert report["rows_in"] == len(lines) == report["rows_kept"] + report["rows_quarantined"]
    assert report["rows_kept"] == 2 and report["reasons"]["duplicate"] == 4


def test_parquet_over_the_cap_is_refused_before_any_row_is_decoded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.DictionaryArray.from_arrays(pa.array([0] * 5000, pa.int32()), pa.array(["p" * 1000]))
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"prompt": values}), path, row_group_size=1000)
    rows = readers.iter_rows(path, Limits(max_file_bytes=2_000_000))
    with pytest.raises(SourceError, match="more than 2,000,000 bytes"):
        next(rows)  # not one row first: rows read before the refusal would pile up as records


def test_parquet_bomb_without_an_arrow_dictionary_type_is_refused_in_small_batches(tmp_path):
    """A dictionary-encoded column the file does not mark as an Arrow dictionary comes back
    as plain strings: batches are sized by its longest dictionary value (4 MB here: 16 rows
    of 64 MB), so no batch decodes to gigabytes before the cap is seen."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from paretoflow.data import parquet_rows

    values = pa.DictionaryArray.from_arrays(pa.array([0] * 3000, pa.int32()), pa.array(["p" * (4 << 20)]))
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"prompt": values, "n": list(range(3000))}), path, store_schema=False, compression="zstd")
    assert path.stat().st_size < 100_000 and pa.types.is_string(pq.read_schema(path).field("prompt").type)
    assert parquet_rows._batch_rows(parquet_rows._opened(path, ["prompt"]), 0, ["prompt"]) == (64 << 20) // (4 << 20)
    with pytest.raises(SourceError, match="more than 50,000,000 bytes"):
        next(readers.iter_rows(path, Limits(max_file_bytes=50_000_000)))


def test_a_repeated_line_gets_the_raw_excerpt_of_its_first_occurrence():
    lines = [b'\xef\xbb\xbf{"prompt": "bom"}', b'{"prompt": "a\x00b"}', b'{"prompt": "\xff"}', b"not json",
             b'{"prompt": "' + "é".encode() * 900 + b'"}', b'{"prompt": "plain"}']
    for number in (1, 2):
        for line in lines:
            first = readers._json_line_row(number, line, Limits(), readers._Objects())
            assert readers._line_raw(line) == first.raw, (number, line[:20])


def test_text_lines_from_chunks_equal_the_whole_texts_csv_lines():
    """CSV/TSV lines are split as they stream: for any cut into chunks, the same lines as
    io.StringIO(newline="") of the whole decoded text (\\r, \\n and \\r\\n ends kept, a leading
    BOM dropped, invalid bytes as lone surrogates), also where a cut falls inside "\\r\\n"
    or inside a multi-byte character."""
    import io

    from paretoflow.data.csv_rows import text_lines

    rng = random.Random(0)
    alphabet = [b"a", b",", b'"', b"\r", b"\n", b"\r\n", "é".encode(), "日".encode(), b"\xff", b"\xef\xbb\xbf"]
    for _ in range(400):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(data) + 1), rng.randint(0, min(6, len(data) + 1))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        whole = io.StringIO(data.decode("utf-8", "surrogateescape").removeprefix("\ufeff"), newline="").readlines()
        assert list(text_lines(iter(chunks))) == whole, (data, chunks)


@pytest.mark.parametrize("suffix", [".csv", ".tsv.gz"])
def test_csv_rows_stream_and_equal_a_whole_read(tmp_path, monkeypatch, suffix):
    """A CSV/TSV file is read a chunk at a time (it was read whole: 2.2 GB peak RSS for
    100k pairs, 287 MB): the first row arrives after a few chunks, and the rows read with
    tiny chunks equal those read with the default chunk size."""
    delimiter = "\t" if suffix.startswith(".tsv") else ","
    lines = [delimiter.join(["prompt", "chosen", "rejected"])]
    lines += [delimiter.join([f"question {i}", f'"an answer\r\nover two lines {i}"', "no"]) for i in range(200)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    path = tmp_path / f"p{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)

    def key(rows):
        return [(r.location, r.raw, r.value, r.error) for r in rows]

    whole = key(readers.read_rows(path))
    assert len(whole) == 200 and whole[5][2] == {"prompt": "question 5", "chosen": "an answer\r\nover two lines 5",
                                                  "rejected": "no"}
    monkeypatch.setattr(readers, "STREAM_CHUNK_BYTES", 16)
    read = []
    streamed = readers.stream_chunks

    def counted(*args):
        for chunk in streamed(*args):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(readers, "stream_chunks", counted)
    rows = readers.iter_rows(path)
    next(rows)
    assert 0 < len(read) < 10  # the header and one record: a few 16-byte chunks, not the file
    assert key(readers.read_rows(path)) == whole


def _compressed(data: bytes, compression: str) -> bytes:
    import bz2
    import lzma

    import pyarrow as pa

    if compression == ".gz":
        return gzip.compress(data)
    if compression == ".bz2":
        return bz2.compress(data)
    if compression == ".xz":
        return lzma.compress(data)
    return pa.compress(data, codec="zstd", asbytes=True)


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
@pytest.mark.parametrize("name", ["p.jsonl", "p.json", "p.csv"])
def test_compressed_text_files_read_as_their_plain_twin(tmp_path, compression, name):
    """.bz2, .xz and .zst stream like .gz (large corpora ship as .jsonl.zst / .xz; each was
    'unsupported file type' before): the same rows as the plain file, a bomb refused at the
    byte cap, a corrupt stream one SourceError naming the file and the codec."""
    pairs = [good_row(i) for i in range(50)]
    if name.endswith(".jsonl"):
        data = "".join(json.dumps(p) + "\n" for p in pairs).encode()
    elif name.endswith(".json"):
        data = json.dumps(pairs).encode()
    else:
        data = ("prompt,chosen,rejected\n" + "".join(f"{p['prompt']},{p['chosen']},{p['rejected']}\n"
                                                      for p in pairs)).encode()
    (tmp_path / name).write_bytes(data)
    packed = tmp_path / (name + compression)
    packed.write_bytes(_compressed(data, compression))

    def rows(path):
        return [(r.location, r.value, r.error) for r in readers.read_rows(path)]

    assert rows(packed) == rows(tmp_path / name) and len(rows(packed)) == 50
    with pytest.raises(SourceError, match="more than 1,000 bytes of content"):
        readers.read_rows(packed, Limits(max_file_bytes=1_000))
    half = packed.read_bytes()[: len(packed.read_bytes()) // 2]
    for tail in (b"", b"\x00garbage" * 8):  # truncated (no row may go unseen), then corrupt
        broken = tmp_path / ("broken" + name + compression)
        broken.write_bytes(half + tail)
        with pytest.raises(SourceError, match=f"broken{name}{compression}: not a readable "
                                              f"{readers.COMPRESSIONS[compression]} file"):
            readers.read_rows(broken)


def good_row(i: int) -> dict:
    return {"prompt": f"How should I prune rose bush {i}?", "chosen": f"Cut rose {i} above an outward bud.",
            "rejected": "Whatever."}


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252", "latin-1", "shift_jis"])
def test_transcoded_chunks_equal_the_whole_texts_utf8_for_any_cut(encoding):
    from pathlib import Path

    from paretoflow.data.rows import transcoded

    text = {"shift_jis": "日本語の質問?\n答え\n", "latin-1": "Café naïve\r\nsecond line é ±\n"}.get(
        encoding, "Café – “quoted” naïve\r\nsecond line é\n")
    data = text.encode(encoding)
    for cut in range(len(data) + 1):
        chunks = iter([data[:cut], data[cut:]])
        assert b"".join(transcoded(Path("t.csv"), chunks, encoding)) == text.encode("utf-8"), cut
    with pytest.raises(SourceError, match="t.csv: not readable as utf-16"):
        list(transcoded(Path("t.csv"), iter(["ok".encode("utf-16") + b"\x00"]), "utf-16"))  # a cut code unit
