"""The model registry: one JSON table under `<home>/models/`, changed atomically under a lock.

Every entry records what made a model (kind, dataset version, code version, params), how
good it is (metrics, operating points) and its status: candidate, champion or retired.
Promotion and rollback rewrite the whole table through a temporary file and a rename while
holding an exclusive lock, so readers see the old champion or the new one, never neither.

Invariants that let a registry survive being copied, moved or damaged:
- artifact paths are stored relative to the models directory and resolved on read
  (`Registry.artifact_dir`), so a copied or moved home serves its own models;
- every read is validated: a truncated or hand-broken registry.json raises `RegistryError`
  naming the file and the command that restores it, never a JSON traceback;
- after each successful change the table is also written to `registry.json.last-good`, the
  copy that restore command puts back; a damaged table is never written over.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from ml.evaluation.results import OperatingPoint, as_json
from ml.lake import write_bytes_atomic

STATUSES = ("candidate", "champion", "retired")
# The fields every reader (CLI, HTTP service, deployment) relies on; an entry without them is damage.
ENTRY_FIELDS = (
    "version",
    "kind",
    "path",
    "status",
    "created_at",
    "dataset_version",
    "code_version",
    "metrics",
    "operating_points",
)


@dataclass(frozen=True)
class EntryMetrics:
    """The figures a registry entry keeps of its evaluation (ml.evaluation.results.PairEvaluation);
    None or an empty mapping: not measured for this entry."""

    text_only_macro_pr_auc: float | None = None
    baseline_text_only_macro_pr_auc: float | None = None
    text_only_pr_auc: Mapping[str, float | None] = field(default_factory=dict)
    held_out_source_macro_pr_auc: Mapping[str, float | None] = field(default_factory=dict)
    test_macro_pr_auc: float | None = None
    qa_gold_macro_pr_auc: float | None = None
    test_pr_auc: Mapping[str, float | None] = field(default_factory=dict)
    gates_passed: bool = False
    failed_gates: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryEntry:
    """One registered model: what made it, how good it is, and its status. `path` is the artifact
    directory as stored (resolve it with `Registry.artifact_dir`)."""

    version: str
    kind: str
    path: str
    dataset_version: str
    code_version: str
    metrics: EntryMetrics
    operating_points: Mapping[str, OperatingPoint]
    params: Mapping = field(default_factory=dict)
    content_classifier: str | None = None  # a pair's content-classifier version
    evaluated_against: str | None = None  # the champion it was compared with
    status: str = "candidate"
    created_at: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metrics"]["failed_gates"] = list(self.metrics.failed_gates)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> RegistryEntry:
        known = {f.name for f in fields(cls)}
        metrics = dict(d.get("metrics") or {})
        metrics["failed_gates"] = tuple(metrics.get("failed_gates") or ())
        metric_fields = {f.name for f in fields(EntryMetrics)}
        return cls(
            **{
                **{k: v for k, v in d.items() if k in known},
                "metrics": EntryMetrics(**{k: v for k, v in metrics.items() if k in metric_fields}),
                "operating_points": {
                    p: op if isinstance(op, OperatingPoint) else OperatingPoint(**op)
                    for p, op in (d.get("operating_points") or {}).items()
                },
            }
        )


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


class ChampionChangedError(RegistryError):
    """A promotion was asked for against a champion that is no longer champion."""


_ANY = object()  # promote(): no expectation about the current champion (a person promoting by hand)


class Registry:
    def __init__(self, models_dir: Path):
        self.dir = Path(models_dir)
        self.path = self.dir / "registry.json"
        self.last_good = self.dir / "registry.json.last-good"

    def _locked(self) -> FileLock:
        """One writer at a time: every change reads, changes and writes the whole table under it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / ".registry.lock")

    def _read(self) -> dict:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            if self.last_good.exists():
                # A fresh home has neither file; losing only registry.json is damage, and starting an
                # empty table here would overwrite the last good copy on the next write.
                raise self._damaged("the file is missing") from None
            return {"models": {}, "history": []}
        except OSError as exc:
            raise self._damaged(f"cannot read it ({exc.strerror or exc})") from exc
        table, problem = _parse(text)
        if problem:
            raise self._damaged(problem)
        return table

    def _damaged(self, problem: str) -> RegistryError:
        restore = f"cp {shlex.quote(str(self.last_good))} {shlex.quote(str(self.path))}"
        try:
            _, last_problem = _parse(self.last_good.read_bytes())
        except OSError:
            last_problem = "missing"
        if last_problem is None:
            saved = datetime.fromtimestamp(self.last_good.stat().st_mtime, UTC).isoformat(timespec="seconds")
            hint = f"restore the last good copy (saved {saved}) with: {restore}"
        else:
            hint = (
                f"there is no usable last good copy ({self.last_good.name}: {last_problem}); restore "
                f"{self.path.name} from a backup"
            )
        return RegistryError(f"model registry {self.path} is damaged ({problem}); {hint}")

    def _write(self, table: dict) -> None:
        problem = _table_problem(table)
        if problem:
            raise RegistryError(f"refusing to write an invalid registry to {self.path}: {problem}")
        data = json.dumps(table, indent=2, sort_keys=True).encode()
        # registry.json first: the last good copy only ever holds a table that was committed.
        for target in (self.path, self.last_good):
            write_bytes_atomic(target, data, sync_dir=True)

    def _stored_path(self, path: str) -> str:
        """How an artifact path is stored: relative to the models directory when it lies inside it."""
        p = Path(path)
        if not p.is_absolute():
            return p.as_posix()
        try:
            return p.resolve().relative_to(self.dir.resolve()).as_posix()
        except ValueError:
            return str(p)  # kept outside the models directory on purpose; stored as given

    # -- reads ------------------------------------------------------------------------
    def list(self) -> list[RegistryEntry]:
        return sorted((RegistryEntry.from_dict(e) for e in self._read()["models"].values()), key=lambda e: e.created_at)

    def get(self, version: str) -> RegistryEntry:
        models = self._read()["models"]
        if version not in models:
            known = ", ".join(sorted(models)) or "none registered yet"
            raise RegistryError(f"unknown model version {version!r} (known: {known})")
        return RegistryEntry.from_dict(models[version])

    def champion(self) -> RegistryEntry | None:
        return next(
            (RegistryEntry.from_dict(e) for e in self._read()["models"].values() if e["status"] == "champion"), None
        )

    def history(self) -> list[dict]:
        return self._read()["history"]

    def artifact_dir(self, entry: RegistryEntry) -> Path:
        """The directory holding `entry`'s artifact in this home.

        Relative paths are resolved against the models directory. Absolute paths come from
        registries written before paths were relative: one inside this models directory is used
        as is; one pointing into another home (a copied or moved home) resolves to the version
        directory of the same name here, so a copy never serves the original's files; an
        artifact kept outside any models directory is used where it is.
        """
        stored = Path(entry.path)
        if not stored.is_absolute():
            candidates = [self.dir / stored]
        elif _inside(stored, self.dir):
            candidates = [stored]
        else:
            candidates = [self.dir / stored.name, stored]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
        tried = " or ".join(str(c) for c in candidates)
        raise RegistryError(
            f"model {entry.version}: its artifact directory is missing ({tried}); restore it "
            "from a backup or promote another version (`trustlake models list`, "
            "`trustlake models promote VERSION`)"
        )

    # -- writes -----------------------------------------------------------------------
    def register(self, entry: RegistryEntry) -> RegistryEntry:
        """Add (or refresh) a candidate; never changes which model is champion."""
        with self._locked():
            table = self._read()
            current = table["models"].get(entry.version, {})
            row = {
                **entry.to_dict(),
                "path": self._stored_path(entry.path),
                "status": current.get("status", "candidate"),
                "created_at": current.get("created_at", entry.created_at or _now()),
            }
            table["models"][entry.version] = row = as_json(row)  # NaN as null: strict JSON
            self._write(table)
        return RegistryEntry.from_dict(row)

    def promote(self, version: str, reason: str, actor: str, expected_champion=_ANY) -> dict:
        """Make `version` champion. With `expected_champion` (a version, or None for "no champion"), only
        if that is still the champion, checked under the lock: a candidate judged against one champion
        never replaces another that was promoted in the meantime (ChampionChangedError)."""
        with self._locked():
            table = self._read()
            if version not in table["models"]:
                known = ", ".join(sorted(table["models"])) or "none registered yet"
                raise RegistryError(f"unknown model version {version!r} (known: {known})")
            previous = next((v for v, e in table["models"].items() if e["status"] == "champion"), None)
            if previous == version:
                raise RegistryError(f"{version} is already the champion")
            if expected_champion is not _ANY and previous != expected_champion:
                raise ChampionChangedError(
                    f"{version} was evaluated against champion {expected_champion or 'none'}, but the champion is now "
                    f"{previous or 'none'}: evaluate it again against the current champion (materialize retrain_job)"
                )
            if previous:
                table["models"][previous]["status"] = "retired"
            table["models"][version]["status"] = "champion"
            event = {
                "at": _now(),
                "action": "promote",
                "version": version,
                "previous": previous,
                "reason": reason,
                "actor": actor,
            }
            table["history"].append(event)
            self._write(table)
        return event

    def rollback(self, actor: str, reason: str = "manual rollback") -> dict:
        """Make the previous champion champion again."""
        with self._locked():
            table = self._read()
            promotions = [h for h in table["history"] if h["action"] in ("promote", "rollback")]
            if not promotions or not promotions[-1].get("previous"):
                raise RegistryError("nothing to roll back to: there has been no earlier champion")
            last = promotions[-1]
            current, target = last["version"], last["previous"]
            table["models"][current]["status"] = "retired"
            table["models"][target]["status"] = "champion"
            # The rollback's own "previous" points at what preceded the target, so repeated
            # rollbacks walk further back instead of flip-flopping.
            before = next((h.get("previous") for h in reversed(promotions) if h["version"] == target), None)
            event = {
                "at": _now(),
                "action": "rollback",
                "version": target,
                "previous": before,
                "rolled_back": current,
                "reason": reason,
                "actor": actor,
            }
            table["history"].append(event)
            self._write(table)
        return event


def _parse(data: bytes) -> tuple[dict, str | None]:
    """The table in `data` and None, or (empty, what is wrong with it)."""
    if not data.strip():
        return {}, "the file is empty"
    try:
        table = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return {}, f"not UTF-8 text at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
    return table, _table_problem(table)


def _table_problem(table) -> str | None:
    if (
        not isinstance(table, dict)
        or not isinstance(table.get("models"), dict)
        or not isinstance(table.get("history"), list)
    ):
        return "expected an object with a 'models' object and a 'history' list"
    for version, entry in table["models"].items():
        if not isinstance(entry, dict):
            return f"model {version!r} is not an object"
        missing = [f for f in ENTRY_FIELDS if f not in entry]
        if missing:
            return f"model {version!r} lacks {', '.join(missing)}"
        if entry["version"] != version:
            return f"model {version!r} records version {entry['version']!r}"
        if entry["status"] not in STATUSES:
            return f"model {version!r} has unknown status {entry['status']!r}"
        if not isinstance(entry["path"], str) or not entry["path"]:
            return f"model {version!r} has no artifact path"
    champions = [v for v, e in table["models"].items() if e["status"] == "champion"]
    if len(champions) > 1:
        return f"more than one champion ({', '.join(sorted(champions))})"
    for k, event in enumerate(table["history"]):
        if not isinstance(event, dict) or "action" not in event or "version" not in event:
            return f"history event {k} lacks action or version"
        unknown = [v for v in (event["version"], event.get("previous")) if v is not None and v not in table["models"]]
        if unknown:
            return f"history event {k} names unknown model {unknown[0]!r}"
    return None


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def registry_entry(artifact, evaluation, code_version: str) -> RegistryEntry:
    """The registry entry of an evaluated pair (`artifact` is the risk model's ModelArtifact, `evaluation`
    its ml.evaluation.results.PairEvaluation): what made it, its text-only, leave-one-source-out,
    simulated and QA-gold figures, and its gates."""
    from ml.evaluation.results import macro
    from ml.taxonomy import POLICIES

    clf = evaluation.classifier
    return RegistryEntry(
        version=artifact.version,
        kind=artifact.kind,
        path=artifact.path,
        content_classifier=evaluation.content_classifier_version,
        dataset_version=artifact.dataset_version,
        code_version=code_version,
        params=artifact.params,
        evaluated_against=evaluation.champion_version,
        metrics=EntryMetrics(
            text_only_macro_pr_auc=clf.text_only.macro_pr_auc,
            baseline_text_only_macro_pr_auc=clf.baseline_text_only.macro_pr_auc,
            text_only_pr_auc={p: clf.text_only.pr_auc(p) for p in POLICIES},
            held_out_source_macro_pr_auc={s.source: s.candidate.macro_pr_auc for s in clf.held_out_sources or ()},
            test_macro_pr_auc=evaluation.test.macro_pr_auc,
            qa_gold_macro_pr_auc=macro(evaluation.qa_gold) if evaluation.qa_gold else None,
            test_pr_auc={p: evaluation.test.pr_auc(p) for p in POLICIES},
            gates_passed=evaluation.gates_passed,
            failed_gates=tuple(evaluation.failed_gates),
        ),
        operating_points=dict(evaluation.operating_points),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
