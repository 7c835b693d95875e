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
from dataclasses import dataclass
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


class KeywordOptions:
    """An object whose options are its constructors' keyword-only arguments: every class in the
    MRO adds its own, and the values are read back from the attributes of the same names.
    Image-level and object-frame methods share it."""

    option_ranges: ClassVar[dict[str, Range]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: A subclass's own default for an option its base class declares (the subclass applies it
    #: with ``common.setdefault``); listed here so that the shown default is the one used.
    option_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def option_names(cls) -> list[str]:
        return [s.name for s in cls.option_specs()]

    @classmethod
    def option_specs(cls) -> list[OptionSpec]:
        """Every option, base classes' first, with type, default, range, choices and help."""
        specs: dict[str, OptionSpec] = {}
        defaults: dict[str, Any] = {}
        ranges: dict[str, Range] = {}
        choices: dict[str, tuple[str, ...]] = {}
        helps: dict[str, str] = {}
        for klass in cls.__mro__:  # most derived first: its ranges, choices and help win
            for k, v in klass.__dict__.get("option_ranges", {}).items():
                ranges.setdefault(k, v)
            for k, v in klass.__dict__.get("option_choices", {}).items():
                choices.setdefault(k, v)
            for k, v in klass.__dict__.get("option_defaults", {}).items():
                defaults.setdefault(k, v)
            if "__init__" in klass.__dict__:
                for k, v in _doc_help(klass.__dict__["__init__"].__doc__).items():
                    helps.setdefault(k, v)
        for klass in reversed(cls.__mro__):
            if "__init__" not in klass.__dict__ or not issubclass(klass, KeywordOptions):
                continue
            init = klass.__dict__["__init__"]
            hints = typing.get_type_hints(init)
            for p in inspect.signature(init).parameters.values():
                if p.kind != p.KEYWORD_ONLY or p.name in specs:
                    continue
                base, optional = _base_type(hints.get(p.name, Any))
                specs[p.name] = OptionSpec(
                    name=p.name,
                    type=base,
                    optional=optional or p.default is None,
                    default=defaults.get(p.name, p.default),
                    range=ranges.get(p.name),
                    choices=choices.get(p.name),
                    help=helps.get(p.name, ""),
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

    def validate_params(self) -> None:
        """Check every option's current value (a one-line :class:`DataError` naming it)."""
        for spec in self.option_specs():
            spec.check(getattr(self, spec.name))

    def get_params(self) -> dict[str, Any]:
        """All constructor options and their values (saved with the model)."""
        return {k: getattr(self, k) for k in self.option_names()}

    def clone(self) -> KeywordOptions:
        """A new, unfitted object with the same options (scikit-learn's ``clone``)."""
        return type(self)(**self.get_params())

    def set_params(self, **params: Any) -> KeywordOptions:
        """Set options by name (typed and validated, as scikit-learn's ``set_params``)."""
        for k, v in self.coerce_options(params, getattr(self, "name", "")).items():
            setattr(self, k, v)
        return self
