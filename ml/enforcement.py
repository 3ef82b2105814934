"""The declarative enforcement policy: scores plus simple context rules -> remove | review | allow.

The policy is a YAML file (docs/enforcement.md); it is validated on load and every error
names the line it is about. Rules are tried in order and the first that matches decides.

    version: 1
    default: allow
    rules:
      - name: remove_ring_scams
        policy: scam                  # a policy, or "any" violating policy
        score_at_least: review        # auto_action | review | a number in [0, 1]
        context: {component_size_at_least: 3}
        action: remove
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from ml.taxonomy import VIOLATING

ACTIONS = ("remove", "review", "allow")
THRESHOLD_NAMES = ("auto_action", "review")
CONTEXT_RULES = {
    "account_age_days_below": float,
    "component_size_at_least": float,
    "prior_enforcements_at_least": float,
    "verified": bool,
}


class PolicyError(ValueError):
    """An enforcement policy file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    name: str
    policy: str
    score_at_least: str | float
    action: str
    context: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EnforcementPolicy:
    rules: tuple[Rule, ...]
    default: str = "allow"

    def decide(self, proba: pl.DataFrame, thresholds: dict[str, dict[str, float]],
               context: pl.DataFrame | None = None) -> np.ndarray:
        """The action for each row of `proba` (p_<policy> columns) given operating points."""
        n = proba.height
        action = np.full(n, None, dtype=object)
        for rule in self.rules:
            policies = VIOLATING if rule.policy == "any" else (rule.policy,)
            hit = np.zeros(n, dtype=bool)
            for p in policies:
                t = (thresholds[p][rule.score_at_least] if isinstance(rule.score_at_least, str)
                     else float(rule.score_at_least))
                hit |= proba[f"p_{p}"].to_numpy() >= t
            for key, value in rule.context.items():
                hit &= _context_mask(context, key, value, n)
            fresh = hit & (action == None)  # noqa: E711  (element-wise)
            action[fresh] = rule.action
        action[action == None] = self.default  # noqa: E711
        return action.astype(str)


def _context_mask(context: pl.DataFrame | None, key: str, value, n: int) -> np.ndarray:
    column = {"account_age_days_below": "account_age_days", "component_size_at_least": "component_size",
              "prior_enforcements_at_least": "prior_enforcements", "verified": "verified"}[key]
    if context is None or column not in context.columns:
        return np.zeros(n, dtype=bool)  # unknown context never satisfies a context rule
    col = context[column].cast(pl.Float64).to_numpy()
    with np.errstate(invalid="ignore"):
        if key == "account_age_days_below":
            return col < value
        if key == "verified":
            return (col == 1.0) == bool(value)
        return col >= value


def _fail(path: str, node, message: str):
    raise PolicyError(f"{path} line {node.start_mark.line + 1}: {message}")


def _scalar(node):
    return yaml.safe_load(yaml.serialize(node)) if node is not None else None


def parse_policy(text: str, path: str = "<policy>") -> EnforcementPolicy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(f"{path}: the policy must be a mapping with 'version', 'default' and 'rules'")
    top = {k.value: v for k, v in root.value}
    for key, node in top.items():
        if key not in ("version", "default", "rules"):
            _fail(path, node, f"unknown key {key!r} (expected version, default, rules)")
    if _scalar(top.get("version")) != 1:
        _fail(path, top.get("version", root), "version must be 1")
    default = _scalar(top.get("default")) or "allow"
    if default not in ACTIONS:
        _fail(path, top["default"], f"default action {default!r} is not one of {', '.join(ACTIONS)}")
    rules_node = top.get("rules")
    if not isinstance(rules_node, yaml.SequenceNode) or not rules_node.value:
        _fail(path, rules_node or root, "'rules' must be a non-empty list")
    rules, names = [], set()
    for item in rules_node.value:
        if not isinstance(item, yaml.MappingNode):
            _fail(path, item, "each rule must be a mapping")
        fields = {k.value: v for k, v in item.value}
        for key, node in fields.items():
            if key not in ("name", "policy", "score_at_least", "action", "context"):
                _fail(path, node, f"unknown rule key {key!r}")
        for required in ("name", "policy", "score_at_least", "action"):
            if required not in fields:
                _fail(path, item, f"rule is missing {required!r}")
        name = _scalar(fields["name"])
        if name in names:
            _fail(path, fields["name"], f"duplicate rule name {name!r}")
        names.add(name)
        policy = _scalar(fields["policy"])
        if policy != "any" and policy not in VIOLATING:
            _fail(path, fields["policy"], f"unknown policy {policy!r} (expected any, {', '.join(VIOLATING)})")
        score = _scalar(fields["score_at_least"])
        if isinstance(score, bool) or not (score in THRESHOLD_NAMES or (isinstance(score, (int, float))
                                                                       and 0 <= score <= 1)):
            _fail(path, fields["score_at_least"],
                  f"score_at_least {score!r} must be auto_action, review or a number in [0, 1]")
        action = _scalar(fields["action"])
        if action not in ACTIONS:
            _fail(path, fields["action"], f"unknown action {action!r} (expected {', '.join(ACTIONS)})")
        context = {}
        if "context" in fields:
            cnode = fields["context"]
            if not isinstance(cnode, yaml.MappingNode):
                _fail(path, cnode, "context must be a mapping")
            for k, v in cnode.value:
                if k.value not in CONTEXT_RULES:
                    _fail(path, k, f"unknown context rule {k.value!r} (expected {', '.join(CONTEXT_RULES)})")
                value = _scalar(v)
                kind = CONTEXT_RULES[k.value]
                if kind is bool and not isinstance(value, bool) or kind is float and (
                        isinstance(value, bool) or not isinstance(value, (int, float))):
                    _fail(path, v, f"{k.value} needs a {'true/false' if kind is bool else 'number'}, got {value!r}")
                context[k.value] = value
        rules.append(Rule(name, policy, score if isinstance(score, str) else float(score), action, context))
    return EnforcementPolicy(tuple(rules), default)


def load_policy(path: Path) -> EnforcementPolicy:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the enforcement policy ({exc.strerror})") from exc
    return parse_policy(text, str(path))


DEFAULT_POLICY_PATH = Path(__file__).with_name("enforcement_policy.yaml")
