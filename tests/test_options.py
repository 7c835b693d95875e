"""Typed method options: conversion by annotation, ranges, choices, help, and the CLI listing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from labelfree.data.imageset import DataError
from labelfree.methods import available_methods, get_method, get_method_class
from labelfree.options import AT_LEAST_1, OPEN_UNIT, POSITIVE, KeywordOptions, Range


class _Toy(KeywordOptions):
    option_ranges = {"n": AT_LEAST_1, "rate": POSITIVE, "share": OPEN_UNIT}
    option_choices = {"mode": ("a", "b")}

    def __init__(
        self,
        *,
        n: int = 3,
        rate: float = 0.1,
        share: float | None = None,
        flag: bool = False,
        mode: str = "a",
    ) -> None:
        """Args:
        n: how many (3). rate: step size, in Eq. 3.1 units.
        share: a fraction. Second sentence not shown.
        flag: on or off.
        mode: a or b.
        """
        self.n, self.rate, self.share, self.flag, self.mode = n, rate, share, flag, mode


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"flag": "false"}, {"flag": False}),
        ({"flag": "False"}, {"flag": False}),
        ({"flag": "no"}, {"flag": False}),
        ({"flag": "0"}, {"flag": False}),
        ({"flag": "true"}, {"flag": True}),
        ({"flag": "yes"}, {"flag": True}),
        ({"n": "7"}, {"n": 7}),
        ({"rate": "2"}, {"rate": 2.0}),
        ({"rate": 2}, {"rate": 2.0}),
        ({"rate": "1e-3"}, {"rate": 0.001}),
        ({"share": "none"}, {"share": None}),
        ({"share": "0.5"}, {"share": 0.5}),
        ({"mode": "b"}, {"mode": "b"}),
    ],
)
def test_strings_and_values_are_converted_by_annotation(raw, expected):
    out = _Toy.coerce_options(raw)
    assert out == expected
    assert all(type(out[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"n": "abc"}, "option n='abc': expected an integer"),
        ({"n": "1.5"}, "option n='1.5': expected an integer"),
        ({"n": 1.5}, "option n=1.5: expected int"),
        ({"n": True}, "option n=True: expected int"),
        ({"n": "0"}, "option n=0: must be >= 1"),
        ({"n": "-1"}, "option n=-1: must be >= 1"),
        ({"rate": "0"}, "option rate=0.0: must be > 0"),
        ({"rate": "nan"}, "option rate=nan: expected a number, not NaN"),
        ({"rate": "fast"}, "option rate='fast': expected a number"),
        ({"share": "1"}, "option share=1.0: must be > 0 and < 1"),
        ({"flag": "maybe"}, "option flag='maybe': expected true or false"),
        ({"flag": 1}, "option flag=1: expected bool"),
        ({"mode": "c"}, "option mode='c': choose one of a, b"),
        ({"n": None}, "option n=None: expected int, not None"),
        ({"bogus": "1"}, "unknown option(s) bogus"),
    ],
)
def test_bad_values_name_the_option(raw, message):
    with pytest.raises(DataError) as exc:
        _Toy.coerce_options(raw)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_range_boundaries():
    assert Range(1).contains(1) and not Range(1).contains(0.999)
    assert not Range(0, lo_open=True).contains(0) and Range(0, lo_open=True).contains(1e-12)
    assert OPEN_UNIT.contains(0.5) and not OPEN_UNIT.contains(0) and not OPEN_UNIT.contains(1)
    assert str(Range(0, 1)) == ">= 0 and <= 1" and str(POSITIVE) == "> 0"


def test_help_is_the_first_sentence_of_the_docstring_entry():
    helps = {s.name: s.help for s in _Toy.option_specs()}
    assert helps == {
        "n": "how many (3)",
        "rate": "step size, in Eq. 3.1 units",
        "share": "a fraction",
        "flag": "on or off",
        "mode": "a or b",
    }


def test_set_params_converts_and_validates():
    t = _Toy().set_params(n="4", flag="off")
    assert (t.n, t.flag) == (4, False)
    with pytest.raises(DataError, match="option n=0"):
        t.set_params(n=0)


@pytest.mark.parametrize("name", available_methods())
def test_every_option_of_every_method_is_typed_and_documented(name):
    klass = get_method_class(name)
    for spec in klass.option_specs():
        assert spec.type in (int, float, bool, str), (name, spec.name)
        assert spec.help, f"{name}: option {spec.name} has no help line in its docstring"
        # the default itself is valid, and survives a round trip through its string form
        spec.check(spec.default)
        text = "none" if spec.default is None else str(spec.default)
        assert spec.coerce(text) == spec.default, (name, spec.name)
    # constructing with defaults validates (device "auto" exists on every machine), and the
    # default each option shows is the value the method really takes
    m = get_method(name)
    m.validate_params()
    params = m.get_params()
    assert klass().get_params() == params  # the plain constructor's defaults are the same
    for spec in klass.option_specs():
        assert params[spec.name] == spec.default, (name, spec.name)


def test_weighted_false_really_trains_unweighted():
    """`-o weighted=false` used to store the truthy string 'false'."""
    assert get_method("mom", weighted="false").weighted is False
    assert get_method("mom", weighted="true").weighted is True
    assert get_method("mom", k_pos="none").k_pos is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dim": 0}, "option dim=0: must be >= 1"),
        ({"epochs": -1}, "option epochs=-1: must be >= 0"),
        ({"batch_size": 0}, "option batch_size=0: must be >= 2"),
        ({"k_pos": "abc"}, "option k_pos='abc': expected an integer"),
        ({"start": "imagenet"}, "option start='imagenet': choose one of scratch"),
        ({"features": "backbone"}, "option features=backbone needs a pretrained backbone"),
        ({"device": "gpu"}, "--device 'gpu': not a device name"),
    ],
)
def test_get_method_refuses_bad_options(options, message):
    with pytest.raises(DataError) as exc:
        get_method("hadsell", **options)
    assert str(exc.value).startswith(message)


def test_fit_validates_options_set_after_construction():
    from labelfree.data.registry import load_data

    m = get_method("hadsell", start="feature-head", features="pixels", progress=False)
    m.training = dataclasses.replace(m.training, epochs=-1)  # a frozen part, swapped whole
    with pytest.raises(DataError, match="option epochs=-1"):
        m.fit(load_data("digits:train"))


def test_features_backbone_uses_the_method_backbone(tmp_path):
    """With a pretrained (hf:) backbone, g(x) is that backbone's pooled output, not a random
    small CNN."""
    m = get_method("hadsell", features="backbone", backbone="hf:" + str(tmp_path))
    ext = m.encoder.extractor(m.runtime.seed)
    assert ext.backbone == "hf:" + str(tmp_path) and ext.pooling == m.encoder.pooling


def test_fit_help_names_every_method(monkeypatch, capsys):
    from labelfree.cli.common import METHOD_NAMES

    listed = {n.split(" ")[0] for n in METHOD_NAMES.split(" | ")}
    assert listed == set(available_methods())
    assert run_cli(["fit", "--help"], monkeypatch) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in available_methods():
        assert name in text


def test_methods_name_lists_type_default_and_help(monkeypatch, capsys):
    assert run_cli(["methods", "mom"], monkeypatch) == 0
    out = capsys.readouterr().out
    for spec in get_method_class("mom").option_specs():
        assert f"{spec.name}: {spec.type_name} = {spec.default!r}" in out
    assert "k_graph: int = 30  (>= 1)" in out
    assert run_cli(["methods", "nope"], monkeypatch) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_zero_epochs_is_the_start_alone(tmp_path):
    """epochs=0 trains nothing after the start: the feature head stays its PCA initialisation
    (the benchmarks' "start, not fine-tuned" row)."""
    from labelfree.data.bundled import digits

    data = digits("train", image_size=16).per_class(10, seed=0)
    m = get_method("hadsell", start="feature-head", features="pixels", epochs=0, progress=False)
    m.fit(data)
    assert [r for r in m.history_ if r.get("stage") == "hadsell"] == []


def test_clone_is_unfitted_with_equal_params():
    from labelfree.data.bundled import digits

    data = digits("train", image_size=16).per_class(10, seed=0)
    m = get_method("hadsell", start="feature-head", features="pixels", epochs=1, k_pos=3)
    m.set_params(progress="false").fit(data)
    c = m.clone()
    assert type(c) is type(m) and c.get_params() == m.get_params() and c.runtime.progress is False
    assert c.net_ is None and m.net_ is not None
    assert np.array_equal(c.fit(data).embed(data), m.embed(data))  # same seed, same result


@pytest.mark.parametrize("name", available_methods())
def test_constructor_lists_every_option_without_kwargs(name):
    """scikit-learn's rule: no ``**kwargs``; the signature names every option, either itself or
    as a field of an option group whose default instance it shows."""
    import inspect

    klass = get_method_class(name)
    params = inspect.signature(klass).parameters.values()
    assert all(p.kind == p.KEYWORD_ONLY for p in params), name
    shown = {p.name for p in params} | {
        f.name
        for p in params
        if dataclasses.is_dataclass(p.default)
        for f in dataclasses.fields(p.default)
    }
    assert set(klass.option_names()) <= shown


def test_flat_options_route_to_their_group_and_defaults_stay_untouched():
    from labelfree.methods.encoder import Encoder

    m = get_method("hadsell", dim="8", epochs=2, seed=3, k_pos=4)
    assert (m.encoder.dim, m.training.epochs, m.runtime.seed, m.k_pos) == (8, 2, 3, 4)
    m.set_params(dim=16, lr="0.01")
    assert m.encoder.dim == 16 and m.training.lr == 0.01 and m.training.epochs == 2
    assert Encoder().dim == 64 and get_method("hadsell").encoder.dim == 64  # frozen defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.encoder.dim = 4  # type: ignore[misc]
    with pytest.raises(DataError, match="option dim=0"):
        m.set_params(dim=0)


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[1] / "recipes").glob("*.toml")), ids=lambda p: p.name
)
def test_every_recipe_names_a_method_and_valid_options(recipe):
    from labelfree.cli.common import _read_recipe

    r = _read_recipe(recipe)
    m = get_method(r["method"], **r["options"])
    m.validate_params()  # every value in its range, every choice allowed
    assert r["source"] and int(r["image_size"]) > 0
