"""Evaluation: how models do on text and sources they never trained on, and the gates they must pass.

`results` holds the frozen records every later stage reads; `metrics` the per-policy and per-slice
figures; `generalisation` leave-one-source-out; `gates` the promotion rules; `evaluate` puts them
together for the evaluation assets; `plots` the PR curves and reliability diagrams.
"""
