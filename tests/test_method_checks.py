"""The check suite every registered method passes, in the spirit of scikit-learn's
``check_estimator``: a method added to the registry is checked here without a line of its own.

On a tiny set: fit; the output twice is identical; save → load → output identical; the input
data is not mutated; the same seed gives the same result; a run killed after its first epoch and
resumed equals the uninterrupted run; a too-small set, NaN initial features and a checkpoint of
another method each give the method's clear error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelfree.data.bundled import digits
from labelfree.data.imageset import DataError, ImageSet
from labelfree.data.synthetic import arm_sequence, synthetic_faces
from labelfree.methods import FrameMethod, available_methods, get_method, get_method_class
from labelfree.train.loop import CheckpointError

METHODS = available_methods()


class Killed(Exception):
    pass


def _tiny_options(name: str) -> dict:
    """Small, fast settings built from the option names a method has (no per-method table)."""
    names = set(get_method_class(name).option_names())
    wanted = {
        "epochs": 2,
        "rounds": 2,
        "start": "distill",
        "features": "pixels",
        "distill_epochs": 1,
        "batch_size": 8,
        "progress": False,
        "seed": 5,
        "device": "cpu",
        "width": 0.25,
        "cache": False,  # the distilled start must come from this run, not another test's cache
    }
    return {k: v for k, v in wanted.items() if k in names}


def _data(name: str) -> ImageSet:
    klass = get_method_class(name)
    if issubclass(klass, FrameMethod) and klass.data_kind == "flow":
        return arm_sequence("train", n_videos=2, frames=6, size=32)
    if issubclass(klass, FrameMethod):
        return synthetic_faces("train", n=12, size=32)
    return digits("train", image_size=16).per_class(12, seed=0)


def _output(m) -> np.ndarray:
    """What a fitted method gives back for images: embeddings, or per-pixel maps."""
    x = _DATA_CACHE["probe"]
    if isinstance(m, FrameMethod):
        with torch.no_grad():
            return m.maps(x).numpy()
    return m.embed(x)


_DATA_CACHE: dict[str, ImageSet] = {}


@pytest.fixture(params=METHODS)
def method_name(request):
    name = request.param
    _DATA_CACHE["probe"] = _data(name).subset(np.arange(6))
    return name


def _state(m) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.net_.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fit_output_save_load_and_no_mutation(method_name, tmp_path):
    data = _data(method_name)
    pixels = data.images.copy()
    labels = None if data.labels is None else data.labels.copy()
    m = get_method(method_name, **_tiny_options(method_name)).fit(data)
    assert np.array_equal(data.images, pixels), "fit changed the input images"
    if labels is not None:
        assert np.array_equal(data.labels, labels), "fit changed the input labels"
    out1, out2 = _output(m), _output(m)
    assert np.isfinite(out1).all()
    assert np.array_equal(out1, out2), "two calls gave different outputs"
    m.save(tmp_path / "m.pt")
    from labelfree.methods import load_model

    loaded = load_model(str(tmp_path / "m.pt"), device="cpu")
    assert type(loaded) is type(m) and loaded.get_params() == m.get_params()
    assert np.array_equal(_output(loaded), out1), "save -> load changed the output"


def test_same_seed_same_result_and_kill_resume(method_name, tmp_path):
    data = _data(method_name)
    opts = _tiny_options(method_name)
    full = get_method(method_name, **opts).fit(data, run_dir=tmp_path / "a")
    again = get_method(method_name, **opts).fit(data)
    _assert_same(_state(full), _state(again))

    stage = method_name

    def kill_after_first_epoch(rec):
        if rec["stage"] == stage and rec.get("round", 0) == 0 and rec["epoch"] == 0:
            raise Killed

    with pytest.raises(Killed):
        get_method(method_name, **opts).fit(
            data, run_dir=tmp_path / "b", on_epoch_end=kill_after_first_epoch
        )
    resumed = get_method(method_name, **opts).fit(data, run_dir=tmp_path / "b", resume=True)
    _assert_same(_state(full), _state(resumed))


def test_too_small_set_is_a_clear_error(method_name):
    m = get_method(method_name, **_tiny_options(method_name))
    data = _data(method_name)
    tiny = data.subset(np.arange(max(m.min_items() - 1, 0)))
    with pytest.raises(DataError, match=r"needs at least \d+"):
        m.fit(tiny)


def test_nan_initial_features_are_a_clear_error(method_name, monkeypatch):
    klass = get_method_class(method_name)
    if issubclass(klass, FrameMethod):
        pytest.skip("pixel-level methods train on warped images, not on initial features g(x)")
    import labelfree.methods.base as base

    real = base.compute_features

    def with_nan(extractor, images, cache=True):
        g = real(extractor, images, cache=False).copy()
        g[3, 0] = np.nan
        return g

    monkeypatch.setattr(base, "compute_features", with_nan)
    m = get_method(method_name, **_tiny_options(method_name))
    with pytest.raises(DataError, match=r"g\(x\) \(pixels\) of .*: 1 NaN/inf values in 1 rows"):
        m.fit(_data(method_name))


def test_checkpoint_of_another_method_is_refused(method_name, tmp_path):
    other = "hadsell" if method_name != "hadsell" else "mom"
    if issubclass(get_method_class(method_name), FrameMethod):
        other = "fse" if method_name != "fse" else "dense"
    data = _data(other)
    opts = {**_tiny_options(other), "epochs": 1, "rounds": 1}
    opts = {k: v for k, v in opts.items() if k in get_method_class(other).option_names()}
    get_method(other, **opts).fit(data, run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="written by"):
        get_method(method_name, **_tiny_options(method_name)).fit(
            _data(method_name), run_dir=tmp_path, resume=True
        )
