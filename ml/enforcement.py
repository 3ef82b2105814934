"""The declarative enforcement policy: scores plus simple context rules -> remove | review | allow.

The policy is a YAML file (docs/serving.md); it is validated on load by pydantic models and
every error names the line it is about. Rules are tried in order and the first that matches decides.
A rule with `mode: shadow` is never tried by `decide`: `shadow_effects` says what it would have
changed had it been enabled (batch scoring logs it per day), so a new rule is measured before it acts.

    version: 1
    default: allow
    rules:
      - name: remove_ring_scams
        policy: scam                  # a policy, or "any" violating policy
        score_at_least: review        # auto_action | review | a number in [0, 1]
        context: {component_size_at_least: 3}
        action: remove
      - name: known_bad_media
        bank_match: any               # a hash bank's name, or "any": the item matched a bank entry
        action: remove                # policy and score_at_least are then optional (default: any, 0)
      - name: review_campaign_members
        policy: any
        score_at_least: 0.1
        context: {campaign_removals_at_least: 3}  # its campaign had 3 confirmed removals before it was posted
        action: review
        max_per_hour: 200             # at most 200 items an hour by this rule; the rest fall to later rules

A `bank_match` rule reads the item's closest hash-bank match (`BANK_MATCH_COLUMNS`, filled by whoever
matched the item against the banks: ml.matching.banks); the decision then carries the bank, its policy
and the entry's provenance (`decide_with_reasons`), so a removal by a bank says which removal or which
imported file put the entry there.

A rule with `max_per_hour` decides at most that many items per clock hour of their creation (`created_at`
in the context; the earliest first), counted across every batch of one scoring call (`decide_with_reasons`'s
`used`), so a campaign rule whose cluster went wrong cannot flood the queue or remove a crowd: the items over
the cap are decided by the rules after it. Without `created_at` such a rule decides nothing.

The YAML is composed (not just loaded) so every value keeps the line it came from; pydantic's
error locations are mapped back onto those lines, which is the one part kept by hand here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml.taxonomy import VIOLATING

ENFORCEMENT_ACTIONS = ("remove", "review", "allow")  # what the policy decides (not a moderator's decision action)
RULE_MODES = ("enabled", "shadow")  # shadow: evaluated and logged, never deciding
THRESHOLD_NAMES = ("auto_action", "review")
# The item's closest hash-bank match, as a scoring frame carries it (null when it matched nothing).
BANK_MATCH_COLUMNS = ("bank_match_bank", "bank_match_policy", "bank_match_provenance")
CONTEXT_COLUMNS = {
    "account_age_days_below": "account_age_days",
    "component_size_at_least": "component_size",
    # Confirmed removals in the item's campaign before it was posted (ml/campaigns/context.py).
    "campaign_removals_at_least": "campaign_removals",
    "prior_enforcements_at_least": "prior_enforcements",
    "verified": "verified",
}


class PolicyError(ValueError):
    """An enforcement policy file is malformed; the message names the file and line."""


def _number(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} needs a number, got {value!r}")
    return float(value)


class ContextRule(BaseModel):
    """Conditions on the item's platform context; unknown context never satisfies one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    account_age_days_below: float | None = None
    component_size_at_least: float | None = None
    campaign_removals_at_least: float | None = None
    prior_enforcements_at_least: float | None = None
    verified: bool | None = None

    @field_validator(
        "account_age_days_below",
        "component_size_at_least",
        "campaign_removals_at_least",
        "prior_enforcements_at_least",
        mode="before",
    )
    @classmethod
    def _numbers(cls, value, info):
        return _number(info.field_name, value)

    @field_validator("verified", mode="before")
    @classmethod
    def _flag(cls, value):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"verified needs a true/false, got {value!r}")
        return value

    def items(self) -> list[tuple[str, float | bool]]:
        return list(self.model_dump(exclude_none=True).items())


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    policy: str
    score_at_least: str | float
    action: str
    context: ContextRule = Field(default_factory=ContextRule)
    mode: str = "enabled"
    bank_match: str | None = None  # "any" or a bank name: the item matched an entry of that bank
    max_per_hour: int | None = None  # at most this many items per clock hour of creation (module docstring)

    @field_validator("max_per_hour", mode="before")
    @classmethod
    def _cap(cls, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"max_per_hour {value!r} must be a whole number of at least 1")
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in RULE_MODES:
            raise ValueError(f"unknown mode {value!r} (expected {', '.join(RULE_MODES)})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _bank_rule_defaults(cls, data):
        # A bank match is evidence enough: such a rule needs no score unless it names one.
        if isinstance(data, dict) and data.get("bank_match") is not None:
            return {"policy": "any", "score_at_least": 0.0, **data}
        return data

    @field_validator("bank_match")
    @classmethod
    def _bank(cls, value):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"bank_match {value!r} must be a bank name or any")
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value != "any" and value not in VIOLATING:
            raise ValueError(f"unknown policy {value!r} (expected any, {', '.join(VIOLATING)})")
        return value

    @field_validator("score_at_least", mode="before")
    @classmethod
    def _score(cls, value):
        if isinstance(value, str) and value in THRESHOLD_NAMES:
            return value
        if not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1:
            return float(value)
        raise ValueError(f"score_at_least {value!r} must be auto_action, review or a number in [0, 1]")

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        if value not in ENFORCEMENT_ACTIONS:
            raise ValueError(f"unknown action {value!r} (expected {', '.join(ENFORCEMENT_ACTIONS)})")
        return value


class EnforcementPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    default: str = "allow"
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value):
        if value != 1 or isinstance(value, bool):
            raise ValueError("version must be 1")
        return value

    @field_validator("default")
    @classmethod
    def _default(cls, value: str) -> str:
        if value not in ENFORCEMENT_ACTIONS:
            raise ValueError(f"default action {value!r} is not one of {', '.join(ENFORCEMENT_ACTIONS)}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> EnforcementPolicy:
        seen = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self

    def decide(
        self, proba: pl.DataFrame, thresholds: dict[str, dict[str, float]], context: pl.DataFrame | None = None
    ) -> np.ndarray:
        """The action for each row of `proba` (p_<policy> columns) given operating points."""
        return self._decide(proba, thresholds, context, {})[0]

    def decide_with_reasons(
        self,
        proba: pl.DataFrame,
        thresholds: dict[str, dict[str, float]],
        context: pl.DataFrame | None = None,
        used: dict | None = None,
    ) -> pl.DataFrame:
        """`decide`, with why: `action`, `decided_by` (the rule, or "default") and `bank_match` (for a
        bank_match rule: "<bank> (<policy>): <provenance>" of the item's closest bank entry; else null).
        `used`: what capped rules already decided in earlier batches of the same call (rule, hour) -> items;
        updated here (None: this batch alone)."""
        action, rule = self._decide(proba, thresholds, context, {} if used is None else used)
        bank_rule = np.isin(rule, [r.name for r in self.rules if r.bank_match is not None])
        if bank_rule.any():
            bank, policy, provenance = (context[c].to_numpy() for c in BANK_MATCH_COLUMNS)
            reason = np.array([f"{b} ({p}): {v}" for b, p, v in zip(bank, policy, provenance)], dtype=object)
        else:
            reason = np.full(len(action), None, dtype=object)
        return pl.DataFrame(
            {
                "action": action,
                "decided_by": rule.astype(str),
                # A list, not the object array: a batch in which no bank rule acted is all None, which
                # Polars cannot cast from an object array.
                "bank_match": np.where(bank_rule, reason, None).tolist(),
            },
            schema={"action": pl.String, "decided_by": pl.String, "bank_match": pl.String},
        )

    def _decide(
        self, proba: pl.DataFrame, thresholds: dict[str, dict[str, float]], context: pl.DataFrame | None, used: dict
    ) -> tuple[np.ndarray, np.ndarray]:
        n = proba.height
        action = np.full(n, None, dtype=object)
        decided_by = np.full(n, "default", dtype=object)
        for rule in self.rules:
            if rule.mode != "enabled":
                continue  # a shadow rule never decides (shadow_effects measures it)
            policies = VIOLATING if rule.policy == "any" else (rule.policy,)
            hit = np.zeros(n, dtype=bool)
            for p in policies:
                t = (
                    thresholds[p][rule.score_at_least]
                    if isinstance(rule.score_at_least, str)
                    else float(rule.score_at_least)
                )
                hit |= proba[f"p_{p}"].to_numpy() >= t
            for key, value in rule.context.items():
                hit &= _context_mask(context, key, value, n)
            if rule.bank_match is not None:
                hit &= _bank_mask(context, rule.bank_match, n)
            fresh = hit & (action == None)  # noqa: E711  (element-wise)
            if rule.max_per_hour is not None:
                fresh = _within_cap(fresh, context, rule, used)
            action[fresh] = rule.action
            decided_by[fresh] = rule.name
        action[action == None] = self.default  # noqa: E711
        return action.astype(str), decided_by.astype(str)

    def shadow_effects(
        self, proba: pl.DataFrame, thresholds: dict[str, dict[str, float]], context: pl.DataFrame | None = None
    ) -> dict[str, dict[str, int]]:
        """For each shadow rule, the rows whose action it would have changed had it been enabled in its place, by
        the action they would have got (`{"review": 12}`): the rows are decided again with it enabled and
        compared with the actions `decide` takes. Nothing here changes an action."""
        shadows = [rule for rule in self.rules if rule.mode == "shadow"]
        if not shadows:
            return {}
        taken = self.decide(proba, thresholds, context)
        out = {}
        for rule in shadows:
            enabled = tuple(r.model_copy(update={"mode": "enabled"}) if r is rule else r for r in self.rules)
            would = self.model_copy(update={"rules": enabled}).decide(proba, thresholds, context)
            changed = would[would != taken]
            out[rule.name] = {a: int((changed == a).sum()) for a in ENFORCEMENT_ACTIONS if (changed == a).any()}
        return out


def _within_cap(fresh: np.ndarray, context: pl.DataFrame | None, rule: Rule, used: dict) -> np.ndarray:
    """The rows of `fresh` a capped rule may still decide: per clock hour of creation, the earliest up to
    `rule.max_per_hour` less what it decided in that hour before (`used`, updated). No creation time, no row."""
    if context is None or "created_at" not in context.columns or not fresh.any():
        return np.zeros_like(fresh)
    rows = np.flatnonzero(fresh)
    at = context["created_at"].gather(rows)
    order = np.argsort(at.to_numpy(), kind="stable")
    hours = at.dt.truncate("1h").to_list()
    allowed = np.zeros_like(fresh)
    for k in order:
        if hours[k] is None:
            continue
        key = (rule.name, hours[k])
        if used.get(key, 0) < rule.max_per_hour:
            used[key] = used.get(key, 0) + 1
            allowed[rows[k]] = True
    return allowed


def _bank_mask(context: pl.DataFrame | None, bank: str, n: int) -> np.ndarray:
    """Rows whose closest bank match is in `bank` ("any": in any bank); no match columns, no match."""
    if context is None or BANK_MATCH_COLUMNS[0] not in context.columns:
        return np.zeros(n, dtype=bool)
    matched = context[BANK_MATCH_COLUMNS[0]]
    return (matched.is_not_null() if bank == "any" else (matched == bank).fill_null(False)).to_numpy()


def _context_mask(context: pl.DataFrame | None, key: str, value, n: int) -> np.ndarray:
    column = CONTEXT_COLUMNS[key]
    if context is None or column not in context.columns:
        return np.zeros(n, dtype=bool)  # unknown context never satisfies a context rule
    col = context[column].cast(pl.Float64).to_numpy()
    with np.errstate(invalid="ignore"):
        if key == "account_age_days_below":
            return col < value
        if key == "verified":
            return (col == 1.0) == bool(value)
        return col >= value


def _plain(node: yaml.Node, loc: tuple, lines: dict[tuple, int]):
    """The Python value of a composed YAML node, recording the line of every location inside it."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key, value in node.value:
            name = yaml.safe_load(yaml.serialize(key))
            lines[(*loc, name, "<key>")] = key.start_mark.line + 1
            out[name] = _plain(value, (*loc, name), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line(loc: tuple, lines: dict[tuple, int], key: bool) -> int:
    if key and (*loc, "<key>") in lines:
        return lines[(*loc, "<key>")]
    while loc and loc not in lines:
        loc = loc[:-1]  # a missing field: the line of the mapping it is missing from
    return lines.get(loc, 1)


def _describe(error: dict) -> str:
    field = error["loc"][-1] if error["loc"] else "policy"
    if error["type"] == "extra_forbidden":
        where = (
            "rule key"
            if len(error["loc"]) == 3 and error["loc"][0] == "rules"
            else ("context rule" if "context" in error["loc"] else "key")
        )
        return f"unknown {where} {field!r}"
    if error["type"] == "missing":
        return f"{'rule' if error['loc'][0] == 'rules' else 'policy'} is missing {field!r}"
    if error["type"] == "too_short" and field == "rules":
        return "'rules' must be a non-empty list"
    return error["msg"].removeprefix("Value error, ") if error["type"] == "value_error" else f"{field}: {error['msg']}"


def parse_policy(text: str, path: str = "<policy>") -> EnforcementPolicy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(f"{path}: the policy must be a mapping with 'version', 'default' and 'rules'")
    lines: dict[tuple, int] = {}
    data = _plain(root, (), lines)
    names = [r.get("name") for r in data.get("rules") or [] if isinstance(r, dict)]
    for i, name in enumerate(names):
        if name is not None and name in names[:i]:
            raise PolicyError(f"{path} line {lines[('rules', i, 'name')]}: duplicate rule name {name!r}")
    try:
        return EnforcementPolicy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]  # the first problem, as a person fixes them one at a time
        loc = tuple(error["loc"])
        raise PolicyError(
            f"{path} line {_line(loc, lines, error['type'] == 'extra_forbidden')}: {_describe(error)}"
        ) from None


def load_policy(path: Path) -> EnforcementPolicy:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the enforcement policy ({exc.strerror})") from exc
    return parse_policy(text, str(path))


DEFAULT_POLICY_PATH = Path(__file__).with_name("enforcement_policy.yaml")
