"""Environment overrides derived from dataclass fields: a `Section` names the fields of one frozen
dataclass a deployment may set, and each is set by the variable named after it,
`TRUSTLAKE_<PREFIX>_<FIELD>`, parsed by the field's type. The dataclass keeps its defaults and types;
orchestration/settings.py declares the sections."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PARSERS: dict[type, tuple[typing.Callable[[str], object], str]] = {
    int: (int, "a whole number"),
    float: (float, "a number"),
    str: (str, "text"),
    date: (date.fromisoformat, "a day (YYYY-MM-DD)"),
}
WRITTEN = {kind.__name__: kind for kind in PARSERS}  # a field's type as its annotation spells it


def parse(variable: str, text: str, kind: object) -> object:
    """`text` as a value of the field type `kind` (one of PARSERS' types, or one of them `| None`)."""
    base = next((k for k in typing.get_args(kind) if k is not type(None)), kind)
    if base not in PARSERS:
        raise TypeError(f"{variable}: a field of type {kind} cannot be set from the environment")
    convert, what = PARSERS[base]
    try:
        return convert(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not {what}") from None


@dataclass(frozen=True)
class Section:
    """The fields of one frozen dataclass that a deployment may set, each with what it means to a person
    (the README's words). The dataclass keeps its defaults and types; this names which fields are knobs."""

    target: str  # "module:Class"
    prefix: str  # the variables are TRUSTLAKE_<PREFIX>_<FIELD>, or TRUSTLAKE_<FIELD> without one
    fields: Mapping[str, str]
    # A variable read before the names were derived -> its field: still read, so no deployment breaks.
    formerly: Mapping[str, str] = field(default_factory=dict)
    # The class's module imports torch, LightGBM or FastAPI (seconds each on two cores): the dataclass is
    # built when first used (the definitions, `trustlake serve`), not by every command that reads settings.
    lazy: bool = False

    def variable(self, name: str) -> str:
        return "_".join(part for part in ("TRUSTLAKE", self.prefix, name.upper()) if part)

    def variables(self, name: str) -> list[str]:
        """The variables that set field `name`: its derived one, then any former name."""
        return [self.variable(name), *(old for old, field_name in self.formerly.items() if field_name == name)]

    def dataclass(self) -> type:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def kinds(self) -> dict[str, object]:
        """The type of each field a deployment may set. A lazy section's types are read from its class's
        source, so a bad value is named when settings are read, without importing torch to find out."""
        if self.lazy:
            return annotations_in_source(*self.target.split(":"), self.fields)
        hints = typing.get_type_hints(self.dataclass())
        return {f: hints[f] for f in self.fields}

    def values(self, env: Mapping[str, str]) -> dict[str, object]:
        """The fields `env` sets (an empty variable is unset), each parsed by its field's type."""
        kinds = self.kinds()
        out = {}
        for name in self.fields:
            given = {v: env[v].strip() for v in self.variables(name) if env.get(v, "").strip()}
            if len(set(given.values())) > 1:
                said = " and ".join(f"{v}={t!r}" for v, t in given.items())
                raise ValueError(f"{said} set the same thing to different values: unset the former name")
            if given:
                variable, text = next(iter(given.items()))
                out[name] = parse(variable, text, kinds[name])
        return out

    def read(self, env: Mapping[str, str], **fixed: object) -> typing.Any:
        """The dataclass with its own defaults, overridden by `fixed` and by what `env` sets. A value the
        dataclass itself rejects is one line: its message, then the variables involved."""
        values = self.values(env)
        try:
            return self.dataclass()(**fixed, **values)
        except ValueError as exc:
            message = str(exc)
            involved = [
                f"{v}={env[v].strip()!r}" if env.get(v, "").strip() else f"{v} unset"
                for name in self.fields
                if name in values or re.search(rf"\b{name}\b", message)
                for v in self.variables(name)[:1]
            ]
            raise ValueError(f"{message} ({', '.join(involved)})" if involved else message) from None

    def defaults(self) -> dict[str, str]:
        """Each field's default as the README shows it (a computed one by its function's docstring)."""
        out = {}
        for f in dataclasses.fields(self.dataclass()):
            if f.name in self.fields:
                if f.default_factory is not dataclasses.MISSING:
                    out[f.name] = (f.default_factory.__doc__ or f.default_factory.__name__).strip()
                else:
                    out[f.name] = "unset" if f.default in (None, "") else f"`{f.default}`"
        return out


def annotations_in_source(module: str, name: str, fields: typing.Iterable[str]) -> dict[str, object]:
    """The annotated types of `fields` of class `name`, read from `module`'s source without importing it
    or its parent packages (ml.scoring's imports scikit-learn): `int`, `float`, `str`, `date`, or one of
    them `| None`."""
    top, *rest = module.split(".")
    package = Path(importlib.util.find_spec(top).submodule_search_locations[0])
    tree = ast.parse(package.joinpath(*rest[:-1], f"{rest[-1]}.py").read_text())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    written = {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}
    out = {}
    for field_name in fields:
        base = written[field_name].removesuffix(" | None")
        if base not in WRITTEN:
            raise TypeError(f"{module}.{name}.{field_name}: a field of type {written[field_name]} cannot be set")
        out[field_name] = WRITTEN[base] | None if base != written[field_name] else WRITTEN[base]
    return out
