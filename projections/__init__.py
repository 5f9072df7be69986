"""baton.projections: what is read back from logs."""
