"""Typed, validated method options.

A method's options are its constructors' keyword-only arguments (scikit-learn's ``get_params``
idea). Their type annotations and defaults say what a value must be; each class may add ranges
(``option_ranges``) and closed choices (``option_choices``); the help line of an option is read
from the ``Args:`` section of the constructor's docstring. From that one description:

- :meth:`KeywordOptions.coerce_options` turns ``-o KEY=VALUE`` strings and recipe values into
  typed values (``-o weighted=false`` is ``False``, not the truthy string ``'false'``);
- :meth:`KeywordOptions.validate_params` checks every value, with a one-line error that names
  the option (``--dim 0``, ``--epochs -1``, ``-o k_pos=abc``);
- ``labelfree methods NAME`` lists each option with its type, default, range and help.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from labelfree.data.imageset import DataError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


@dataclass(frozen=True)
class Range:
    """Allowed numeric interval: ``lo`` / ``hi`` inclusive unless ``*_open``; ``None`` unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return " and ".join(parts)


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, lo_open=True)
UNIT = Range(0, 1)
OPEN_UNIT = Range(0, 1, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class OptionSpec:
    """One option: its name, base type (int, float, bool, str), whether ``None`` is allowed,
    default, range, choices and help line."""

    name: str
    type: type
    optional: bool
    default: Any
    range: Range | None
    choices: tuple[str, ...] | None
    help: str

    @property
    def type_name(self) -> str:
        return self.type.__name__ + (" | None" if self.optional else "")

    def coerce(self, value: Any) -> Any:
        """``value`` (a string from the command line or a TOML/Python value) as this type."""
        if isinstance(value, str):
            text = value.strip()
            if self.optional and text.lower() in _NONE:
                return None
            if self.type is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise self.error(value, "expected true or false")
            if self.type is int:
                try:
                    return int(text)
                except ValueError:
                    raise self.error(value, "expected an integer") from None
            if self.type is float:
                try:
                    return float(text)
                except ValueError:
                    raise self.error(value, "expected a number") from None
            return value
        if value is None:
            if self.optional:
                return None
            raise self.error(value, f"expected {self.type.__name__}, not None")
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and self.type is not bool:
            raise self.error(value, f"expected {self.type.__name__}")
        if not isinstance(value, self.type):
            raise self.error(value, f"expected {self.type.__name__}")
        return value

    def check(self, value: Any) -> None:
        """Raise :class:`DataError` naming the option unless ``value`` is allowed."""
        if value is None:
            if not self.optional:
                raise self.error(value, f"expected {self.type.__name__}, not None")
            return
        self.coerce(value)  # type check
        if self.type is float and value != value:  # NaN
            raise self.error(value, "expected a number, not NaN")
        if self.range is not None and self.type in (int, float):
            if not self.range.contains(value):
                raise self.error(value, f"must be {self.range}")
        if self.choices is not None and value not in self.choices:
            raise self.error(value, f"choose one of {', '.join(self.choices)}")

    def error(self, value: Any, why: str) -> DataError:
        return DataError(f"option {self.name}={value!r}: {why}")


def _base_type(annotation: Any) -> tuple[type, bool]:
    """``int | None`` → ``(int, True)``; ``float`` → ``(float, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return _base_type(args[0])[0], optional
        return object, optional
    if annotation in (int, float, bool, str):
        return annotation, False
    return object, False


# An option's entry in an ``Args:`` section: at a line start or after a sentence, one or more
# names separated by commas, then a colon ("k_pos, k_neg: ...", "alpha: ... cg_iters: ...").
_ARG_MARK = re.compile(
    r"(?:(?<=\n)|(?<=\. )|(?<=^))\s*([a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*):\s"
)


# A sentence ends at ". " before a capital, except after the abbreviations the docstrings use.
_SENTENCE_END = re.compile(r"(?<!Eq\.)(?<!Fig\.)(?<!e\.g\.)(?<!i\.e\.)(?<!Ch\.)(?<=\.)\s+(?=[A-Z])")


def _doc_help(doc: str | None) -> dict[str, str]:
    """First sentence of each option's description in a Google-style ``Args:`` section."""
    if not doc:
        return {}
    body = doc.split("Args:", 1)[1] if "Args:" in doc else doc
    marks = list(_ARG_MARK.finditer(body))
    out: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=False):
        text = " ".join(body[m.end() : nxt.start() if nxt else len(body)].split())
        text = text.replace("``", "")
        first = _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".")
        for name in m.group(1).split(", "):
            out.setdefault(name, first)
    return out


class OptionGroup:
    """Base of a frozen dataclass of options that a method composes (its encoder, its
    training, its runtime): each field is an option with the same flat name on the command line,
    in recipes and in :meth:`KeywordOptions.get_params`; ``option_ranges`` / ``option_choices``
    say what is allowed and the help lines come from the class's ``Args:`` docstring. Frozen, so
    one default instance can sit in every signature."""

    option_ranges: ClassVar[dict[str, Range]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, OptionGroup)


class KeywordOptions:
    """An object whose options are its constructor's keyword-only arguments, listed explicitly
    (scikit-learn's rule: no ``**kwargs``). An argument annotated with an :class:`OptionGroup`
    (``encoder: Encoder = Encoder()``) contributes its fields as options under their own names:
    ``get_params()`` is flat (``{"k_pos": 5, ..., "dim": 64, "epochs": 10, ...}``), and
    :meth:`from_options` / :meth:`set_params` route a flat name to its group — scikit-learn's
    ``encoder__dim`` is spelled ``dim``, since names are unique across a class's groups."""

    option_ranges: ClassVar[dict[str, Range]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def _init_params(cls) -> list[tuple[inspect.Parameter, Any]]:
        init = cls.__init__
        hints = typing.get_type_hints(init)
        return [
            (p, hints.get(p.name, Any))
            for p in inspect.signature(init).parameters.values()
            if p.kind == p.KEYWORD_ONLY
        ]

    @classmethod
    def option_groups(cls) -> dict[str, type]:
        """Constructor arguments that are option groups, by argument name."""
        return {p.name: ann for p, ann in cls._init_params() if _is_group(ann)}

    @classmethod
    def option_names(cls) -> list[str]:
        return [s.name for s in cls.option_specs()]

    @classmethod
    def option_specs(cls) -> list[OptionSpec]:
        """Every option in constructor order (a group's fields in its place), with type, default,
        range, choices and help. The class's own ranges, choices and help win over a group's."""
        ranges: dict[str, Range] = {}
        choices: dict[str, tuple[str, ...]] = {}
        helps: dict[str, str] = {}
        for klass in cls.__mro__:  # most derived first
            for k, v in klass.__dict__.get("option_ranges", {}).items():
                ranges.setdefault(k, v)
            for k, v in klass.__dict__.get("option_choices", {}).items():
                choices.setdefault(k, v)
            if "__init__" in klass.__dict__:
                for k, v in _doc_help(klass.__dict__["__init__"].__doc__).items():
                    helps.setdefault(k, v)
        entries: list[tuple[str, Any, Any]] = []  # (name, annotation, default)
        for p, ann in cls._init_params():
            if not _is_group(ann):
                entries.append((p.name, ann, p.default))
                continue
            default = p.default if p.default is not p.empty else ann()
            hints = typing.get_type_hints(ann)
            for k, v in ann.option_ranges.items():
                ranges.setdefault(k, v)
            for k, v in ann.option_choices.items():
                choices.setdefault(k, v)
            for k, v in _doc_help(ann.__doc__).items():
                helps.setdefault(k, v)
            entries += [(f.name, hints[f.name], getattr(default, f.name)) for f in fields(ann)]
        specs: dict[str, OptionSpec] = {}
        for name, ann, default in entries:
            if name in specs:
                raise TypeError(f"{cls.__qualname__}: option {name!r} is declared twice")
            base, optional = _base_type(ann)
            specs[name] = OptionSpec(
                name=name,
                type=base,
                optional=optional or default is None,
                default=default,
                range=ranges.get(name),
                choices=choices.get(name),
                help=helps.get(name, ""),
            )
        return list(specs.values())

    @classmethod
    def coerce_options(cls, raw: dict[str, Any], owner: str = "") -> dict[str, Any]:
        """Typed and validated values of ``raw`` (strings or Python values), by option name."""
        specs = {s.name: s for s in cls.option_specs()}
        unknown = [k for k in raw if k not in specs]
        if unknown:
            who = f" for method {owner!r}" if owner else ""
            raise DataError(
                f"unknown option(s) {', '.join(unknown)}{who}; options: {', '.join(specs)}"
            )
        out = {k: specs[k].coerce(v) for k, v in raw.items()}
        for k, v in out.items():
            specs[k].check(v)
        return out

    @classmethod
    def _route(cls, flat: dict[str, Any], groups: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments from flat options: a group's fields replace those of
        ``groups[name]`` (its current or default instance)."""
        members = {g: {f.name for f in fields(t)} for g, t in cls.option_groups().items()}
        kwargs = {k: v for k, v in flat.items() if not any(k in m for m in members.values())}
        for g, names in members.items():
            sub = {k: v for k, v in flat.items() if k in names}
            if sub:
                kwargs[g] = replace(groups[g], **sub)
        return kwargs

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Any:
        """Construct from flat options as they are (saved ones: not converted, not checked —
        a model saved with ``device=cuda`` still loads on a CPU machine)."""
        defaults = {p.name: p.default for p, ann in cls._init_params() if _is_group(ann)}
        return cls(**cls._route(params, defaults))

    @classmethod
    def from_options(cls, **options: Any) -> Any:
        """Construct from flat options (``dim=128, epochs=3, k_pos=5``), typed and validated."""
        obj = cls.from_params(cls.coerce_options(options, getattr(cls, "name", "")))
        obj.validate_params()
        return obj

    def validate_params(self) -> None:
        """Check every option's current value (a one-line :class:`DataError` naming it)."""
        for g, t in self.option_groups().items():
            if not isinstance(getattr(self, g), t):
                raise DataError(f"option {g}={getattr(self, g)!r}: expected {t.__name__}")
        params = self.get_params()
        for spec in self.option_specs():
            spec.check(params[spec.name])

    def get_params(self) -> dict[str, Any]:
        """All options and their values, flat (saved with the model)."""
        groups = self.option_groups()
        out: dict[str, Any] = {}
        for p, _ in self._init_params():
            if p.name in groups:
                out.update(
                    {f.name: getattr(getattr(self, p.name), f.name) for f in fields(groups[p.name])}
                )
            else:
                out[p.name] = getattr(self, p.name)
        return out

    def clone(self) -> Any:
        """A new, unfitted object with the same options (scikit-learn's ``clone``)."""
        return type(self).from_params(self.get_params())

    def set_params(self, **params: Any) -> Any:
        """Set options by flat name (typed and validated, as scikit-learn's ``set_params``)."""
        flat = self.coerce_options(params, getattr(self, "name", ""))
        current = {g: getattr(self, g) for g in self.option_groups()}
        for k, v in self._route(flat, current).items():
            setattr(self, k, v)
        return self
