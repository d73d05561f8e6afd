"""Data: raw sources (hub or local JSONL) and generated tasks -> verl's parquet rows."""
