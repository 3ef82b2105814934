"""trustlake's plain-Python library: corpora, simulator, lake I/O, features and models.

Nothing in this package imports Dagster; every function takes and returns Polars frames,
NumPy arrays, paths and dataclasses so it can be tested on its own.
"""
