"""Training sets, models and their shared output schema."""
