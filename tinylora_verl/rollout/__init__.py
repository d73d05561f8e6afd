"""vLLM-side pieces: the worker extension that loads synced weights on CPU and reads them back."""
