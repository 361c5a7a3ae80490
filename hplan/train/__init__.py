"""Training: the chunked, checkpointed loop and the stack pipeline (all the I/O)."""
