"""The verl seam: TinyLoRA engine, worker and trainer registered into verl 0.9.1 (imports verl)."""
