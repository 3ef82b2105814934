"""Feature builds in Polars: text signals, point-in-time author history, account networks."""
