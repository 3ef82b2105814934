"""Who owns which assets: one team per asset group, shown as owners in the Dagster UI.

dbt models get theirs through the translator (assets/warehouse.py), every other asset when the
definitions are built (orchestration/definitions.py); an asset that names its own owners keeps them.
"""

from collections.abc import Sequence

OWNERS_BY_GROUP: dict[str, tuple[str, ...]] = {
    "raw": ("team:data-platform",),
    "warehouse": ("team:analytics-engineering",),
    "features": ("team:ml-platform",),
    "images": ("team:ml-platform",),
    "campaigns": ("team:trust-safety-ml",),
    "training": ("team:ml",),
    "evaluation": ("team:ml",),
    "image_evaluation": ("team:trust-safety-ml",),
    "deployment": ("team:ml",),
    "scoring": ("team:trust-safety-ml",),
    "monitoring": ("team:trust-safety-ml",),
}


def owners_for(group: str | None) -> Sequence[str]:
    if group not in OWNERS_BY_GROUP:
        raise KeyError(f"asset group {group!r} has no owner: add it to OWNERS_BY_GROUP in assets/ownership.py")
    return OWNERS_BY_GROUP[group]
