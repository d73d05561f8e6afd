"""Training and evaluation data: raw sources (hub or local JSONL) -> verl's parquet rows."""
