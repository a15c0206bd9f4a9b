"""Dataset formats, label tables, incremental splits and synthetic data."""
