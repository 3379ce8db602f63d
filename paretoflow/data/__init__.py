"""Data import and curation: raw datasets → the canonical tables (paretoflow.schema).

- `importers`: read builtin / HH-RLHF / PKU-SafeRLHF / HelpSteer2 / UltraFeedback /
  generic files into records, quarantining malformed rows.
- `normalize`: text normalisation applied before hashing.
- `dedup`: exact and MinHash-LSH near-duplicate detection, decontamination, hash split.
- `curate`: the curate stage (`curate.run(params, root)`), writing the tables, the
  quarantine table and report.json.
"""
