"""Data import and curation: raw datasets → the canonical tables (paretoflow.schema).

- `readers`: files → rows under per-file and per-field size caps (JSONL/JSON/CSV/TSV,
  gzipped too, Parquet); a wholly unreadable file is one SourceError naming it.
- `importers`: read builtin / HH-RLHF / PKU-SafeRLHF / HelpSteer2 / UltraFeedback /
  generic files into records, quarantining any row that fails, whatever the exception.
- `normalize`: text normalisation applied before hashing.
- `dedup`: exact and MinHash-LSH near-duplicate detection, decontamination, hash split.
- `validate`: the Great Expectations gate; its verdict is tied to the tables' content hash.
- `curate`: the curate stage (`curate.run(params, root)`), writing the tables, the
  quarantine table and report.json.
"""
