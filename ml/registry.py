"""The model registry: one JSON table under `<home>/models/`, changed atomically under a lock.

Every entry records what made a model (kind, dataset version, code version, params), how
good it is (metrics, operating points), how its launch was judged (`LaunchRecord`: risk tier,
evidence, approval) and its status: candidate, champion or retired. Beside the champion, one
model at most is deployed as the shadow: scored on live traffic, never acting (ml/launch/).
Every change rewrites the whole table through a temporary file and a rename while holding an
exclusive lock, so readers see the old champion or the new one, never neither, and appends one
record per event to the append-only audit log (ml/launch/audit.py) under the same lock.

Invariants that let a registry survive being copied, moved or damaged:
- artifact paths are stored relative to the models directory and resolved on read
  (`Registry.artifact_dir`), so a copied or moved home serves its own models;
- every read is validated: a truncated or hand-broken registry.json raises `RegistryError`
  naming the file and the command that restores it, never a JSON traceback;
- after each successful change the table is also written to `registry.json.last-good`, the
  copy that restore command puts back; a damaged table is never written over;
- the table's history holds every event the audit log should; a change first appends any event
  of the history the log lacks (its process was killed between the two writes), marked recovered,
  so the log misses nothing the registry committed.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path

from filelock import FileLock

from ml.evaluation.results import OperatingPoint, as_json
from ml.lake import write_bytes_atomic
from ml.launch.audit import AUDIT_FILE, AuditLog, AuditRecord, file_sha256, new_record

STATUSES = ("candidate", "champion", "retired")
# Where a launch stands: no approval needed (low risk, or a first launch), awaiting one, or decided by a person.
APPROVALS = ("not_needed", "pending", "approved", "rejected")
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
class LaunchRecord:
    """How a model's launch was judged and decided: the risk tier of its launch report, the evidence the
    decision rested on (a file under the models directory), and the approval a high-risk launch waits for."""

    risk_tier: str  # first | low | high (ml/launch/bounds.py)
    report: str
    reasons: tuple[str, ...] = ()
    approval: str = "not_needed"
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping) -> LaunchRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in known}, "reasons": tuple(d.get("reasons") or ())})


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
    launch: LaunchRecord | None = None  # None: not judged for launch (registered before it was, or not yet)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metrics"]["failed_gates"] = list(self.metrics.failed_gates)
        if self.launch is not None:
            out["launch"]["reasons"] = list(self.launch.reasons)
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
                "launch": LaunchRecord.from_dict(d["launch"]) if d.get("launch") else None,
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
        self.audit = AuditLog(self.dir / AUDIT_FILE)

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

    def shadow(self) -> RegistryEntry | None:
        """The model deployed as the shadow (scored beside the champion, never acting), if any."""
        table = self._read()
        slot = table.get("shadow")
        return RegistryEntry.from_dict(table["models"][slot["version"]]) if slot else None

    def history(self) -> list[dict]:
        return self._read()["history"]

    def promoted_on(self, version: str) -> date | None:
        """The day (UTC) `version` last became champion, by promotion or rollback; None if it never did."""
        at = next(
            (
                h.get("at")
                for h in reversed(self.history())
                if h["action"] in ("promote", "rollback") and h["version"] == version
            ),
            None,
        )
        return date.fromisoformat(at[:10]) if at else None

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
        """Add (or refresh) a candidate; never changes which model is champion or how its launch stands."""
        with self._locked():
            table = self._read()
            current = table["models"].get(entry.version, {})
            row = {
                **entry.to_dict(),
                "path": self._stored_path(entry.path),
                "status": current.get("status", "candidate"),
                "created_at": current.get("created_at", entry.created_at or _now()),
                "launch": current.get("launch") or entry.to_dict()["launch"],
            }
            table["models"][entry.version] = row = as_json(row)  # NaN as null: strict JSON
            self._write(table)
        return RegistryEntry.from_dict(row)

    def _change(self, apply: Callable[[dict], list[AuditRecord]]) -> list[AuditRecord]:
        """One change under the lock: `apply` edits the table and returns what happened; the events join
        the table's history, the table is committed, then each event is appended to the audit log."""
        with self._locked():
            table = self._read()
            self._catch_up_audit(table)
            records = apply(table)
            table["history"].extend(r.to_dict() for r in records)
            self._write(table)
            for record in records:
                self.audit.append(record)
        return records

    def _catch_up_audit(self, table: dict) -> None:
        """Append the events the table committed but the audit log lacks (a process killed between the
        two writes), marked recovered. Events written before the log existed carry no id and are not."""
        logged = self.audit.event_ids()
        for event in table["history"]:
            if event.get("event_id") and event["event_id"] not in logged:
                self.audit.append(replace(AuditRecord.from_dict(event), recovered=True))

    def _evidence(self, table: dict, version: str, report: str | None = None) -> dict:
        """The audit fields naming what a change of `version` rested on: its launch record's tier and evidence, or
        `report` (a file under the models directory a person read), with that file's SHA-256 as it is now."""
        launch = table["models"][version].get("launch")
        if not launch:
            return {}
        report = report or launch["report"]
        return {"risk_tier": launch["risk_tier"], "report": report, "report_sha256": file_sha256(self.dir / report)}

    def promote(
        self, version: str, reason: str, actor: str, expected_champion=_ANY, launch: LaunchRecord | None = None
    ) -> dict:
        """Make `version` champion. With `expected_champion` (a version, or None for "no champion"), only
        if that is still the champion, checked under the lock: a candidate judged against one champion
        never replaces another that was promoted in the meantime (ChampionChangedError). `launch`: how the
        launch was judged (deployed_model records it), kept on the entry and cited in the audit record."""

        def apply(table: dict) -> list[AuditRecord]:
            previous = _champion(table)
            _known(table, version)
            if previous == version:
                raise RegistryError(f"{version} is already the champion")
            if expected_champion is not _ANY and previous != expected_champion:
                raise ChampionChangedError(
                    f"{version} was evaluated against champion {expected_champion or 'none'}, but the champion is "
                    f"now {previous or 'none'}: evaluate it again against the current champion (materialize "
                    "retrain_job)"
                )
            if launch is not None:
                table["models"][version]["launch"] = _launch_row(launch)
            return self._promoted(table, version, previous, actor, reason)

        return self._change(apply)[0].to_dict()

    def _promoted(self, table: dict, version: str, previous: str | None, actor: str, reason: str) -> list:
        if previous:
            table["models"][previous]["status"] = "retired"
        table["models"][version]["status"] = "champion"
        promoted = new_record("promote", version, actor, reason, previous=previous, **self._evidence(table, version))
        return [promoted, *_end_shadow(table, version, actor, "promoted to champion")]

    def rollback(self, actor: str, reason: str = "manual rollback") -> dict:
        """Make the previous champion champion again."""

        def apply(table: dict) -> list[AuditRecord]:
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
            event = new_record("rollback", target, actor, reason, previous=before, rolled_back=current)
            return [event, *_end_shadow(table, target, actor, "rolled back to champion")]

        return self._change(apply)[0].to_dict()

    def start_shadow(self, version: str, actor: str, reason: str) -> list[AuditRecord]:
        """Deploy `version` as the shadow beside the champion (replacing any other shadow): scored every day,
        never acting. Only a model that passed its gates, and only while there is a champion to compare with."""

        def apply(table: dict) -> list[AuditRecord]:
            return self._shadowed(table, version, actor, reason)

        return self._change(apply)

    def _shadowed(self, table: dict, version: str, actor: str, reason: str) -> list[AuditRecord]:
        entry = _known(table, version)
        champion = _champion(table)
        if champion is None:
            raise RegistryError(f"no champion to shadow: {version} can be promoted instead (trustlake models promote)")
        if champion == version:
            raise RegistryError(f"{version} is the champion: a shadow is a model beside the champion, not the champion")
        if not (entry.get("metrics") or {}).get("gates_passed"):
            raise RegistryError(
                f"{version} did not pass its gates ({', '.join((entry.get('metrics') or {}).get('failed_gates') or [])}"
                "): only a gated candidate is deployed as the shadow"
            )
        current = (table.get("shadow") or {}).get("version")
        if current == version:
            raise RegistryError(f"{version} is already the shadow")
        stopped = _end_shadow(table, current, actor, f"replaced by {version}") if current else []
        table["shadow"] = {"version": version, "since": _now(), "actor": actor, "reason": reason}
        return [*stopped, new_record("shadow_start", version, actor, reason, **self._evidence(table, version))]

    def stop_shadow(self, actor: str, reason: str) -> list[AuditRecord]:
        def apply(table: dict) -> list[AuditRecord]:
            current = (table.get("shadow") or {}).get("version")
            if current is None:
                raise RegistryError("no shadow is deployed")
            return _end_shadow(table, current, actor, reason)

        return self._change(apply)

    def request_approval(self, version: str, launch: LaunchRecord, actor: str, shadow: bool) -> list[AuditRecord]:
        """Record that `version`'s launch waits for a person's approval (`launch.approval` pending), and with
        `shadow` deploy it as the shadow meanwhile, so its live impact is measured before anyone signs."""

        def apply(table: dict) -> list[AuditRecord]:
            _known(table, version)
            table["models"][version]["launch"] = _launch_row(replace(launch, approval="pending"))
            reason = f"{launch.risk_tier}-risk launch: " + "; ".join(launch.reasons or ("beyond the launch bounds",))
            records = [new_record("approval_requested", version, actor, reason, **self._evidence(table, version))]
            if shadow and _champion(table) is not None:
                records += self._shadowed(table, version, actor, "awaiting approval: measured on live traffic first")
            return records

        return self._change(apply)

    def approve(self, version: str, by: str, reason: str, report: str | None = None) -> list[AuditRecord]:
        """A person approves `version`'s pending launch, having read `report` (a file under the models directory;
        default: the launch evidence): it is promoted at once, provided the champion is still the one it was
        evaluated against (ChampionChangedError otherwise, and nothing changes)."""

        def apply(table: dict) -> list[AuditRecord]:
            entry = self._pending(table, version, "approve")
            previous = _champion(table)
            if previous != entry.get("evaluated_against"):
                raise ChampionChangedError(
                    f"{version} was evaluated against champion {entry.get('evaluated_against') or 'none'}, but the "
                    f"champion is now {previous or 'none'}: its launch report no longer describes this launch; "
                    "evaluate it again (materialize retrain_job) and approve the new report"
                )
            self._decided(table, version, "approved", by, reason)
            approved = new_record("approve", version, by, reason, **self._evidence(table, version, report))
            return [approved, *self._promoted(table, version, previous, by, f"approved by {by}: {reason}")]

        return self._change(apply)

    def reject(self, version: str, by: str, reason: str, report: str | None = None) -> list[AuditRecord]:
        """A person rejects `version`'s pending launch: it is never promoted automatically, and stops shadowing."""

        def apply(table: dict) -> list[AuditRecord]:
            self._pending(table, version, "reject")
            self._decided(table, version, "rejected", by, reason)
            rejected = new_record("reject", version, by, reason, **self._evidence(table, version, report))
            return [rejected, *_end_shadow(table, version, by, "launch rejected")]

        return self._change(apply)

    def _pending(self, table: dict, version: str, verb: str) -> dict:
        entry = _known(table, version)
        launch = entry.get("launch") or {}
        if launch.get("approval") != "pending":
            said = {
                None: "its launch has not been judged (materialize launch_impact and deployed_model)",
                "not_needed": f"its launch was {launch.get('risk_tier')} risk and needed no approval",
                "approved": f"it was approved by {launch.get('decided_by')} at {launch.get('decided_at')}",
                "rejected": f"it was rejected by {launch.get('decided_by')} at {launch.get('decided_at')}",
            }[launch.get("approval")]
            raise RegistryError(f"cannot {verb} {version}: it awaits no approval ({said})")
        return entry

    def _decided(self, table: dict, version: str, approval: str, by: str, reason: str) -> None:
        launch = table["models"][version]["launch"]
        launch.update(approval=approval, decided_by=by, decided_at=_now(), decision_reason=reason)


def _known(table: dict, version: str) -> dict:
    if version not in table["models"]:
        known = ", ".join(sorted(table["models"])) or "none registered yet"
        raise RegistryError(f"unknown model version {version!r} (known: {known})")
    return table["models"][version]


def _champion(table: dict) -> str | None:
    return next((v for v, e in table["models"].items() if e["status"] == "champion"), None)


def _launch_row(launch: LaunchRecord) -> dict:
    return {**asdict(launch), "reasons": list(launch.reasons)}


def _end_shadow(table: dict, version: str, actor: str, reason: str) -> list[AuditRecord]:
    """Stop `version`'s shadow if it is the shadow (a promoted, rolled-back-to or rejected model stops shadowing)."""
    if (table.get("shadow") or {}).get("version") != version:
        return []
    table["shadow"] = None
    return [new_record("shadow_stop", version, actor, reason)]


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
    for version, entry in table["models"].items():
        launch = entry.get("launch")
        if launch is not None and (not isinstance(launch, dict) or launch.get("approval") not in APPROVALS):
            return f"model {version!r} has a launch record without a known approval state"
    shadow = table.get("shadow")
    if shadow is not None:
        if not isinstance(shadow, dict) or shadow.get("version") not in table["models"]:
            return "the shadow names no registered model"
        if shadow["version"] in champions:
            return f"the shadow {shadow['version']!r} is the champion"
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
