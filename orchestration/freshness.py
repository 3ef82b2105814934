"""What a run needs to build: the assets, or daily partitions of them, whose inputs changed since they
were last built, and why. `trustlake run` launches only those, so a second run on unchanged data
trains nothing and rebuilds no dbt model, and a new day builds what depends on it.

Dagster records on every materialization the code version it ran and the data versions and event
ids of its inputs (its provenance). An asset (or one daily partition of it) is stale when
- it was never materialized;
- its definition's code version differs from the one recorded (dbt: the model's SQL checksum;
  Python assets: a hash of their module and the trustlake modules it imports, code_version.py);
- a parent with a data version of its own (the training set's dataset version, the deployed
  champion, the reference sets' fingerprint) now has another one than the one recorded;
- a parent without one was materialized after it (for a daily partition: the same day of it);
- an asset whose inputs live outside the lake (the corpora, imported label sets) reports a
  fingerprint of them that differs from the data version it last recorded;
- a parent in the same selection is stale (it is rebuilt first, so this one follows).
An asset may decline to build (text_model without a GPU): it records why as an observation, and
counts as up to date, with everything that reads it, until its own inputs change.
The UI shows the same provenance and marks stale assets; Dagster's own stale status is not used
here because it stops following partitioned parents past 100 partitions, where a year of days
would look up to date forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from assets.metadata import DECLINED

CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
USER_DATA_VERSION_TAG = "dagster/data_version_is_user_provided"
INPUT_DATA_VERSION_TAG = "dagster/input_data_version/"

Cell = tuple[dg.AssetKey, str | None]  # an asset and one of its partitions (None: unpartitioned)


@dataclass(frozen=True)
class Build:
    """An asset's (or partition's) latest materialization, as far as freshness needs it, or the
    observation it recorded when it declined to build (`declined`: why)."""

    storage_id: int
    code_version: str | None
    data_version: str | None
    user_data_version: bool
    input_data_versions: Mapping[str, str] = field(default_factory=dict)
    declined: str = ""


def _build(record) -> Build:
    tags = record.event_log_entry.asset_materialization.tags or {}
    return Build(
        storage_id=record.storage_id,
        code_version=tags.get(CODE_VERSION_TAG),
        data_version=tags.get(DATA_VERSION_TAG),
        user_data_version=tags.get(USER_DATA_VERSION_TAG) == "true",
        input_data_versions={
            k[len(INPUT_DATA_VERSION_TAG) :]: v for k, v in tags.items() if k.startswith(INPUT_DATA_VERSION_TAG)
        },
    )


class Freshness:
    """Stale assets and partitions of an asset graph, read from the instance's event log.

    `asset_graph` is the code location's (a Launcher's `asset_graph`, or `Definitions.get_asset_graph()`);
    `external_versions` the current fingerprint of assets whose inputs live outside the lake.
    """

    def __init__(
        self, instance: dg.DagsterInstance, asset_graph, external_versions: Mapping[dg.AssetKey, str] | None = None
    ):
        self.instance = instance
        self.graph = asset_graph
        self.external = dict(external_versions or {})
        self._builds: dict[dg.AssetKey, dict[str | None, Build]] = {}
        self._declined: dict[dg.AssetKey, Build | None] = {}

    def builds(self, key: dg.AssetKey) -> dict[str | None, Build]:
        """The latest materialization of every partition of `key` (key None: unpartitioned), newest first."""
        if key not in self._builds:
            seen: dict[str | None, Build] = {}
            cursor = None
            while True:
                page = self.instance.fetch_materializations(key, limit=1000, cursor=cursor)
                for record in page.records:
                    seen.setdefault(record.partition_key, _build(record))
                if not page.has_more:
                    break
                cursor = page.cursor
            self._builds[key] = seen
        return self._builds[key]

    def declined(self, key: dg.AssetKey) -> Build | None:
        """The newest observation in which `key` declined to build (assets/metadata.py DECLINED), if any."""
        if key not in self._declined:
            records = self.instance.fetch_observations(key, limit=1).records
            obs = records[0].event_log_entry.asset_observation if records else None
            reason = obs.metadata.get(DECLINED) if obs else None
            self._declined[key] = (
                Build(records[0].storage_id, None, None, False, declined=str(reason.value)) if reason else None
            )
        return self._declined[key]

    def latest(self, key: dg.AssetKey, partition: str | None = None) -> Build | None:
        """The newest materialization of `key` (of `partition`, if given; of any partition if None), or
        its newest declining observation when that came later."""
        builds = self.builds(key)
        built = (
            builds.get(partition)
            if partition is not None
            else max(builds.values(), key=lambda b: b.storage_id, default=None)
        )
        if partition is None:
            declined = self.declined(key)
            if declined is not None and (built is None or declined.storage_id > built.storage_id):
                return declined
        return built

    def stale(self, keys: Iterable[dg.AssetKey], partitions: list[str] | None = None) -> dict[Cell, str]:
        """Every stale cell among `keys` (each partitioned one over `partitions`) and why."""
        keys = set(keys)
        reasons: dict[Cell, str] = {}
        done: set[Cell] = set()

        def visit(key: dg.AssetKey, partition: str | None) -> None:
            cell = (key, partition)
            if cell in done:
                return
            done.add(cell)
            node = self.graph.get(key)
            for parent in node.parent_keys:
                if parent in keys:
                    visit(parent, partition if self.graph.get(parent).is_partitioned else None)
            why = self._why_stale(key, partition, node, keys, reasons)
            if why:
                reasons[cell] = why

        for key in keys:
            node = self.graph.get(key)
            for partition in (partitions or []) if node.is_partitioned else [None]:
                visit(key, partition)
        return reasons

    def _why_stale(self, key, partition, node, keys, reasons) -> str:
        day = f" {partition}" if partition else ""
        build = self.latest(key, partition) if partition else self.latest(key)
        if build is None:
            if any((d := self.latest(p)) is not None and d.declined for p in node.parent_keys):
                return ""  # never built because an input declined to build (and says why)
            return f"{key.to_user_string()}{day} was never built"
        if node.code_version and not build.declined and build.code_version != node.code_version:
            return f"{key.to_user_string()}: its code changed"
        if key in self.external and build.data_version != self.external[key]:
            return f"{key.to_user_string()}: its inputs outside the lake changed"
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            p_node = self.graph.get(parent)
            p_partition = partition if p_node.is_partitioned and partition else None
            name = parent.to_user_string()
            if parent in keys and (parent, p_partition) in reasons:
                return f"upstream {name}{day if p_partition else ''} is rebuilt first"
            upstream = self.latest(parent, p_partition) if p_partition else self.latest(parent)
            if upstream is None:
                continue  # a parent never built gives nothing to compare (and is stale itself if selected)
            if upstream.declined and not build.declined and upstream.storage_id > build.storage_id:
                return ""  # its input declined to build since (no GPU for text_model): nothing new to do
            if upstream.user_data_version and not p_node.is_partitioned and not build.declined:
                if build.input_data_versions.get(name) != upstream.data_version:
                    return f"{name} has a new data version"
            elif upstream.storage_id > build.storage_id:
                return f"{name}{day if p_partition else ''} was built after it"
        return ""


def stale_partitions(reasons: Mapping[Cell, str], partitions: list[str]) -> list[str]:
    """The partitions (in order) that any stale cell names; an unpartitioned stale cell in a partitioned
    job makes the last partition stale, so a one-day run rebuilds it and what reads it."""
    named = {p for (_, p) in reasons if p is not None}
    if any(p is None for (_, p) in reasons) and partitions:
        named.add(partitions[-1])
    return [p for p in partitions if p in named]


def ranges(days: list[str], all_days: list[str]) -> list[tuple[str, str]]:
    """Contiguous runs of `days` within the ordered `all_days`, as (first, last) pairs."""
    position = {d: i for i, d in enumerate(all_days)}
    out: list[tuple[str, str]] = []
    for d in sorted(days, key=position.__getitem__):
        if out and position[d] == position[out[-1][1]] + 1:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out
