"""The methods by name: a method's module registers its class with :func:`register_method`, so
adding a method needs nothing but its file (and, for a method outside this package, an import of
that file before ``labelfree.methods.get_method`` is called)."""

from __future__ import annotations

from typing import Any, TypeVar

from labelfree.data.imageset import DataError

_METHODS: dict[str, type] = {}

#: What ``labelfree fit`` trains when no --method is given, and what the demo shows: the method
#: with the best held-out quality measured here (``bench_quality.py --rows defaults``, mnist5k
#: digits 5-9, 3 seeds: MoM 0.632 ± 0.015 MAP@R, diffusion 0.583, Hadsell 0.534, HOG-LDA g(x)
#: 0.562).
DEFAULT_METHOD = "mom"

M = TypeVar("M", bound=type)


def register_method(cls: M) -> M:
    """Class decorator: make ``cls`` available as ``get_method(cls.name)`` and
    ``labelfree fit --method <name>``. A second class under a taken name is an error."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__}: a registered method needs a class attribute 'name'")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method name {name!r} is taken by {_METHODS[name].__qualname__}")
    _METHODS[name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a method from the registry (for tests that register a toy method)."""
    _METHODS.pop(name, None)


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method_class(name: str) -> type:
    if name not in _METHODS:
        raise DataError(f"unknown method {name!r}; choose one of {', '.join(available_methods())}")
    return _METHODS[name]


def get_method(name: str, **options: Any) -> Any:
    """Construct a method by name. Option values may be strings (``-o KEY=VALUE``): they are
    converted by the constructor's type annotations; an unknown option, a value of the wrong
    type or out of range is a one-line :class:`DataError` that names the option."""
    return get_method_class(name).from_options(**options)
