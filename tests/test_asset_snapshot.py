"""Every asset spec of the code location against a committed snapshot, so a changed graph (a new
asset, a moved group, a lost dependency, a renamed check) is a visible diff in review.

Regenerate after an intended change, from the project root:

    .venv/bin/python -m tests.test_asset_snapshot
"""

import json
import sys
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def partitioning(partitions_def) -> str | None:
    # The first day depends on the home's pinned window, so the snapshot records only the kind.
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.DailyPartitionsDefinition):
        return f"daily (end_offset {partitions_def.end_offset})"
    return type(partitions_def).__name__


def asset_specs() -> dict:
    from orchestration.definitions import defs

    graph = defs().resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        name = key.to_user_string()
        out[name] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioning": partitioning(node.partitions_def),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "checks": sorted(checks.get(name, [])),
        }
    return out


def test_asset_specs_match_the_committed_snapshot():
    current = asset_specs()
    committed = json.loads(SNAPSHOT.read_text())
    changed = sorted(k for k in set(current) | set(committed) if current.get(k) != committed.get(k))
    assert changed == [], (
        f"the asset graph changed for {changed}; if that is intended, regenerate the snapshot "
        "with `.venv/bin/python -m tests.test_asset_snapshot` and commit the diff"
    )


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(asset_specs(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
