"""Data sets in verl's parquet format."""
