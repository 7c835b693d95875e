"""The label-free methods, by name."""

from __future__ import annotations

from typing import Any

from labelfree.data.imageset import DataError
from labelfree.methods.base import Method, read_model_file
from labelfree.methods.cliquecnn import CliqueCNN
from labelfree.methods.frames import FRAME_METHODS, FrameMethod
from labelfree.methods.hadsell import Hadsell
from labelfree.methods.mom import MoM
from labelfree.methods.posets import Posets
from labelfree.methods.roul import ROUL

_METHODS: dict[str, type[Method]] = {m.name: m for m in (Hadsell, MoM, ROUL, CliqueCNN, Posets)}
# Pixel-level object-frame methods (seed 004): their own fit/save/load, same registry.
_METHODS.update({m.name: m for m in FRAME_METHODS})  # type: ignore[misc]


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise DataError(f"unknown method {name!r}; choose one of {', '.join(available_methods())}")
    return _METHODS[name]


def get_method(name: str, **options: Any) -> Method:
    """Construct a method by name. Option values may be strings (``-o KEY=VALUE``): they are
    converted by the constructor's type annotations; an unknown option, a value of the wrong
    type or out of range is a one-line :class:`DataError` that names the option."""
    klass = get_method_class(name)
    m = klass(**klass.coerce_options(options, owner=name))
    m.validate_params()
    return m


def load_model(path: str, device: str = "auto") -> Method:
    """Load any saved model; the method is read from the file."""
    state = read_model_file(path)
    return get_method_class(state["method"]).load(path, device=device)


__all__ = [
    "Method",
    "FrameMethod",
    "Hadsell",
    "MoM",
    "CliqueCNN",
    "Posets",
    "ROUL",
    "available_methods",
    "get_method",
    "get_method_class",
    "load_model",
]
