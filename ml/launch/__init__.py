"""Launch assurance: what a candidate would change before it acts, and a record of who let it act.

- `bounds`: `LaunchBounds`, the configured limits a launch is judged by, and the risk tier they give;
- `impact`: the launch impact, from paired actions of the champion and the candidate on the same content
  (a backtest over the last days, or the candidate's shadow scores): volumes and queue deltas per policy
  and surface, review hours, expected wrongful removals;
- `card` and `report`: the model card and the launch report a reviewer reads (Markdown and plots);
- `audit`: the append-only audit log of every promotion, approval, rejection, rollback and shadow change;
- `postlaunch`: after a promotion, each day's realised volumes against the launch's prediction.
Nothing here imports Dagster; the assets in assets/launch.py call it. Submodules are imported by name
(`from ml.launch.audit import AuditLog`), so the registry's import of the audit log stays light.
"""
