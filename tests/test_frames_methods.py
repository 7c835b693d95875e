"""Object-frame methods on the training loop: pairs, fit, points, save/load, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from labelfree.data import registry
from labelfree.data.imageset import ImageSet
from labelfree.data.synthetic import arm_sequence, synthetic_faces
from labelfree.frames.nets import FrameNet
from labelfree.methods import get_method, load_model
from labelfree.methods.frames import STRIDE, FrameStructure, cells_to_pixels

TINY = dict(epochs=1, width=0.25, batch_size=4, progress=False, device="cpu")


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces("train", n=12, size=32), synthetic_faces("test", n=10, size=32)


def _sample(img: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Colours (B, 3, P) of images (B, 3, H, W) at map cells (B, P, 2) (bilinear)."""
    h, w = img.shape[-2:]
    pix = cells_to_pixels(cells)
    size = torch.tensor([w, h], dtype=pix.dtype)
    grid = ((2 * pix + 1) / size - 1)[:, :, None]
    return F.grid_sample(img, grid, align_corners=False)[..., 0]


def test_nets_output_half_resolution():
    x = torch.rand(2, 3, 32, 32)
    for arch in ("landmark", "simple", "dilations"):
        assert FrameNet(arch, 7, width=0.25)(x).shape == (2, 7, 16, 16)
    with pytest.raises(ValueError, match="unknown frame network"):
        FrameNet("resnet")


@pytest.mark.parametrize("name", ["dense", "dense-sym"])
def test_warp_pairs_correspond(faces, name):
    """x at cell u shows what x′ shows at G[u] (mirrored pairs included) wherever masked valid."""
    train, _ = faces
    m = (
        get_method(name, **TINY, mirror_prob=1.0)
        if name == "dense-sym"
        else get_method(name, **TINY)
    )
    torch.manual_seed(0)
    xx, pair = m._warp_inputs(train, np.arange(6), torch.device("cpu"))
    x, x2 = xx.chunk(2)
    h, w = x.shape[-2:]
    ident = torch.stack(
        torch.meshgrid(torch.arange(h // STRIDE), torch.arange(w // STRIDE), indexing="xy"), -1
    )
    cells = ident.reshape(1, -1, 2).float().expand(6, -1, -1)
    a = _sample(x, cells)
    b = _sample(x2, pair["G"])
    err = (a - b).abs().amax(1)[pair["mask"]]
    assert pair["mask"].float().mean() > 0.5
    assert err.median() < 0.03 and err.mean() < 0.06
    if name == "dense-sym":
        assert pair["flip"].all()


def _translated_video(shift: tuple[int, int], size: int = 32, frames: int = 3) -> ImageSet:
    """One video of a random texture moving by the integer ``shift`` (dx, dy) per frame, with
    its exact flow (NaN where the material leaves the frame, and on the last frame) and a
    foreground mask that leaves out a 4-pixel border."""
    dx, dy = shift
    pad = frames * max(abs(dx), abs(dy))
    big = np.random.default_rng(0).integers(0, 256, (size + 2 * pad, size + 2 * pad, 3))
    # frame t shows big[p + pad − t·shift], so material at p in frame t is at p + shift in t+1
    images = np.stack(
        [
            big[pad - t * dy : pad - t * dy + size, pad - t * dx : pad - t * dx + size]
            for t in range(frames)
        ]
    ).astype(np.uint8)
    ys, xs = np.mgrid[:size, :size]
    inside = (xs + dx >= 0) & (xs + dx < size) & (ys + dy >= 0) & (ys + dy < size)
    flow = np.full((frames, size, size, 2), np.nan, np.float32)
    flow[:-1][:, inside] = [dx, dy]
    mask = np.zeros((frames, size, size), bool)
    mask[:, 4:-4, 4:-4] = True
    meta = {
        "video": np.zeros(frames, int),
        "frame": np.arange(frames),
        "flow": flow,
        "mask": mask,
    }
    return ImageSet(images, name="translated", meta=meta)


@pytest.mark.parametrize("shift", [(3, -2), (-1, 4)])
def test_flow_pairs_correspond(shift):
    """For a rigid translation the flow pair is exact: x at cell u shows what x′ shows at G[u]
    (the same four pixels, moved), wherever the pair is valid."""
    data = _translated_video(shift)
    m = get_method("dense", **TINY)
    assert m._use_flow(data)
    m._succ = m._flow_successors(data)
    np.testing.assert_array_equal(m._succ, [1, 2, -1])
    idx = np.flatnonzero(m._succ >= 0)
    xx, pair = m._flow_inputs(data, idx, torch.device("cpu"))
    x, x2 = xx.chunk(2)
    torch.testing.assert_close(x2[0], x[1])  # x′ is the next frame
    cells = torch.stack(torch.meshgrid(torch.arange(16), torch.arange(16), indexing="xy"), -1)
    cells = cells.reshape(1, -1, 2).float().expand(len(idx), -1, -1)
    # G[u] = u + flow / stride; valid exactly where the corner pixel has flow and is foreground
    corner = cells_to_pixels(cells) - (STRIDE - 1) / 2
    cy, cx = corner[0, :, 1].long(), corner[0, :, 0].long()
    flow = torch.from_numpy(data.meta["flow"][idx][:, cy, cx])
    want_mask = torch.isfinite(flow).all(-1) & torch.from_numpy(data.meta["mask"][idx][:, cy, cx])
    assert torch.equal(pair["mask"], want_mask) and want_mask.sum() > 100
    shift_cells = torch.tensor(shift, dtype=torch.float32) / STRIDE
    torch.testing.assert_close(pair["G"][want_mask], (cells + shift_cells)[want_mask])
    a, b = _sample(x, cells), _sample(x2, pair["G"])
    err = (a - b).abs().amax(1)[pair["mask"]]
    assert err.max() < 1e-5
    # the arm sequence takes the same path: flow pairs between consecutive frames of a video
    arm = arm_sequence("train", n_videos=2, frames=4, size=32)
    assert m._use_flow(arm)
    assert (m._flow_successors(arm) >= 0).sum() == 6


@pytest.mark.parametrize("name", ["fse", "dense", "dense-sym", "evc"])
def test_fit_points_save_load(faces, tmp_path, name):
    train, test = faces
    m = get_method(name, **TINY).fit(train)
    assert len(m.history_) == 1 and np.isfinite(m.history_[0]["loss"])
    pts = m.points(test)
    p = 10 if name == "fse" else m.frame.n_points
    assert pts.shape == (len(test), p, 2)
    dense = m.dense_map(test)
    assert dense.shape[0] == len(test) and dense.shape[2:] == (32, 32)
    m.save(tmp_path / "model.pt")
    m2 = load_model(str(tmp_path / "model.pt"))
    assert type(m2) is type(m) and m2.get_params() == m.get_params()
    np.testing.assert_allclose(m2.points(test), pts, atol=1e-5)


def test_fse_gradient_step_reduces_its_loss(faces):
    """The FSE training signal points downhill: on one fixed warp pair (float64), a gradient
    step of the batch loss the training loop minimises lowers it by the first-order amount
    η‖∇L‖² (up to the second-order term, here ~1e-4 of it: the step is 1e-6 of the loss)."""
    train, _ = faces
    m = get_method("fse", **TINY, k=4)
    m._build(train)
    net = m.net_.double().train()
    torch.manual_seed(0)
    xx, pair = m._warp_inputs(train, np.arange(6), torch.device("cpu"))
    xx, pair = xx.double(), {**pair, "G": pair["G"].double()}
    params = [p for p in net.parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        batch = {"indices": np.arange(6), "aux": pair}
        return m.batch_loss(net(xx), batch, FrameStructure(np.arange(6)))

    before = loss()
    grads = torch.autograd.grad(before, params)
    g2 = sum(float((g * g).sum()) for g in grads)
    assert g2 > 0
    eta = 1e-6 * before.item() / g2
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= eta * g
        after = loss().item()
    assert after < before.item()
    assert (before.item() - after) / (eta * g2) == pytest.approx(1.0, rel=1e-2)


def test_unknown_option_and_pairs_errors(faces):
    from labelfree.data.imageset import DataError

    with pytest.raises(DataError, match="unknown option"):
        get_method("fse", dim=3)
    with pytest.raises(DataError, match="flow"):
        get_method("dense", **TINY, pairs="flow").fit(faces[0])


@pytest.mark.slow
def test_cli_fit_and_evaluate(tmp_path, monkeypatch, capsys):
    small = {"synthetic-faces": lambda split, size=64: synthetic_faces(split, n=12, size=32)}
    monkeypatch.setattr(registry, "_SYNTHETIC", {**registry._SYNTHETIC, **small})
    out = tmp_path / "cli"
    args = ["fit", "--method", "fse", "--data", "synthetic-faces:train", "--eval"]
    args += ["synthetic-faces:test", "--out", out, "--epochs", "1", "--no-progress"]
    args += ["-o", "width=0.25", "-o", "k=3", "--batch-size", "4", "--device", "cpu"]
    assert run_cli(args, monkeypatch) == 0, capsys.readouterr().err
    reps = json.loads((out / "metrics.json").read_text())["representations"]
    assert set(reps) == {"fse", "random-net", "mean-shape"}
    for k in ("iod_error_all", "iod_error_1", "iod_error_20", "matching_px"):
        assert np.isfinite(reps["fse"][k]) and np.isfinite(reps["random-net"][k])
    assert reps["mean-shape"]["iod_error_all"] > 0
    assert (out / "landmarks.png").exists() and (out / "model.pt").exists()
    page = (out / "report.html").read_text()
    assert "iod_error_all" in page and 'src="landmarks.png"' in page and "MAP@R" not in page
    # errors: the bold cell of a column is its smallest value
    best = min(reps[k]["iod_error_all"] for k in reps)
    assert f"<b>{best:.3f}</b>" in page
    code = run_cli(
        [
            "evaluate",
            "--model",
            out / "model.pt",
            "--data",
            "synthetic-faces:test",
            "--json",
            tmp_path / "e.json",
        ],
        monkeypatch,
    )
    assert code == 0, capsys.readouterr().err
    assert "fse" in json.loads((tmp_path / "e.json").read_text())["representations"]
