"""Cross-pixel optical-flow similarity (seed 004 Ch.8): kernels, losses and the flow
normalisation against hand computations on 3–4 pixels; the method on data with exact flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labelfree.data.imageset import DataError
from labelfree.losses.cpfs import (
    cell_flow,
    cpfs_loss,
    embedding_kernel,
    flow_bins,
    flow_classification_loss,
    flow_kernel,
    gather_cells,
    kernel_alignment,
    log_diag_softmax,
    normalise_flow,
)


def test_flow_normalisation_by_formula():
    f = torch.tensor([[0.0, 56.0], [-3.0, 100.0], [0.5, -56.0]])
    want = [
        [0.0, 1.0],
        [-math.log(4) / math.log(57), 1.0],
        [math.log(1.5) / math.log(57), -1.0],
    ]
    assert torch.allclose(normalise_flow(f), torch.tensor(want), atol=1e-7)
    # a different M changes the scale: |f| = M maps to exactly 1
    assert normalise_flow(torch.tensor([9.0]), flow_max=9.0).item() == pytest.approx(1.0)


def test_kernels_by_hand():
    phi = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])
    k = embedding_kernel(phi)[0]
    c = 1 / math.sqrt(2)
    want = 0.25 * torch.tensor([[1.0, 0.0, c], [0.0, 1.0, c], [c, c, 1.0]])
    assert torch.allclose(k, want, atol=1e-6)
    f = torch.tensor([[[0.0, 0.0], [0.06, 0.0], [0.0, 0.12]]])
    kf = flow_kernel(f, 0.0036)[0]
    want_f = torch.tensor(
        [
            [1.0, math.exp(-0.5), math.exp(-2.0)],
            [math.exp(-0.5), 1.0, math.exp(-2.5)],
            [math.exp(-2.0), math.exp(-2.5), 1.0],
        ]
    )
    assert torch.allclose(kf, want_f, atol=1e-5)


def _eq5(K: np.ndarray) -> np.ndarray:
    """Eq. 5 written out: S(p, p) = 1 / (Σ_{q'≠p} e^{K(p,q')} + 1), S(p, q) = e^{K(p,q)} / (...)."""
    n = len(K)
    S = np.zeros_like(K)
    for p in range(n):
        z = sum(math.exp(K[p, q]) for q in range(n) if q != p) + 1.0
        for q in range(n):
            S[p, q] = 1.0 / z if p == q else math.exp(K[p, q]) / z
    return S


def test_cross_entropies_and_alignment_by_hand():
    phi = torch.tensor([[[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [0.0, -1.0]]], dtype=torch.float64)
    flow = torch.tensor([[[0.0, 0.0], [0.05, 0.0], [0.4, 0.1], [-0.2, 0.3]]], dtype=torch.float64)
    k_phi = embedding_kernel(phi)[0].numpy()
    k_f = flow_kernel(flow, 0.0036)[0].numpy()
    s_phi, s_f = _eq5(k_phi), _eq5(k_f)
    assert np.allclose(log_diag_softmax(torch.from_numpy(k_phi)).exp().numpy(), s_phi)
    ce = -sum(s_f[p, q] * math.log(s_phi[p, q]) for p in range(4) for q in range(4)) / 4
    ce_rev = -sum(s_phi[p, q] * math.log(s_f[p, q]) for p in range(4) for q in range(4)) / 4
    kta = (k_phi * k_f).sum() / math.sqrt((k_phi**2).sum() * (k_f**2).sum())
    assert cpfs_loss(phi, flow, "ce").item() == pytest.approx(ce, rel=1e-9)
    assert cpfs_loss(phi, flow, "ce-rev").item() == pytest.approx(ce_rev, rel=1e-9)
    assert cpfs_loss(phi, flow, "kta").item() == pytest.approx(-kta, rel=1e-9)
    assert kernel_alignment(torch.from_numpy(k_f)[None], torch.from_numpy(k_f)[None]).item() == (
        pytest.approx(1.0)
    )
    with pytest.raises(ValueError, match="objective"):
        cpfs_loss(phi, flow, "mse")


def test_embedding_that_groups_by_motion_has_the_lower_loss():
    """Two pixels move one way, two another: grouping the embedding by motion must cost less
    than the opposite grouping, under every objective."""
    flow = torch.tensor([[[0.5, 0.0], [0.5, 0.0], [-0.5, 0.0], [-0.5, 0.0]]])
    good = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]])
    bad = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])
    for objective in ("ce", "ce-rev", "kta"):
        assert cpfs_loss(good, flow, objective) < cpfs_loss(bad, flow, objective), objective


def test_flow_classification_baseline_by_hand():
    flow = torch.tensor([[[-1.0, 1.0], [0.0, -0.01]]])
    assert flow_bins(flow, 16).tolist() == [[[0, 15], [8, 7]]]
    logits = torch.randn(1, 2, 32, generator=torch.Generator().manual_seed(0))
    lx = torch.log_softmax(logits[..., :16], -1)
    ly = torch.log_softmax(logits[..., 16:], -1)
    want = -0.5 * ((lx[0, 0, 0] + lx[0, 1, 8]) / 2 + (ly[0, 0, 15] + ly[0, 1, 7]) / 2)
    assert flow_classification_loss(logits, flow, 16).item() == pytest.approx(want.item())


def test_cell_flow_and_gather():
    flow = np.zeros((1, 4, 4, 2), np.float32)
    flow[0, 0, 0] = [4.0, 8.0]
    flow[0, 2, 3] = np.nan
    cf = cell_flow(flow)
    assert cf.shape == (1, 2, 2, 2)
    assert cf[0, 0, 0].tolist() == [1.0, 2.0]
    assert np.isnan(cf[0, 1, 1]).all() and np.isfinite(cf[0, 1, 0]).all()
    maps = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 3, 2, 2).repeat(2, 1, 1, 1)
    got = gather_cells(maps, torch.tensor([[3, 0], [1, 1]]))
    assert got.shape == (2, 2, 3)
    assert got[0, 0].tolist() == [3.0, 7.0, 11.0] and got[1, 1].tolist() == [1.0, 5.0, 9.0]


def test_cpfs_needs_flow_and_trains_on_it():
    from labelfree.data.synthetic import arm_sequence, synthetic_faces
    from labelfree.methods import get_method

    opts = dict(epochs=1, width=0.25, progress=False, device="cpu", pixels=64, batch_size=4)
    with pytest.raises(DataError, match="cpfs.*flow"):
        get_method("cpfs", **opts).fit(synthetic_faces("train", n=6, size=32))
    arm = arm_sequence("train", n_videos=2, frames=4, size=32)
    for objective in ("ce", "classify"):
        m = get_method("cpfs", objective=objective, **opts).fit(arm)
        assert m.maps(arm).shape[1] == (16 if objective == "ce" else 32)
    learned = get_method("cpfs", learn_sigma=True, **opts).fit(arm)
    assert float(learned.flow_sigma2()) != pytest.approx(0.0036, abs=0)  # σ² moved


def test_miou_and_nearest_neighbour_transfer_by_hand():
    from labelfree.evaluate.segmentation import miou, nn_transfer_miou

    assert miou([0, 0, 1, 1], [0, 1, 1, 1], 2) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert miou([2, 2], [2, 2], 5) == 1.0  # absent classes do not count
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    test = np.array([[2.0, 0.1], [0.1, 3.0], [-1.0, 0.2]])
    # nearest by cosine: 0, 1, and the third is closer to [0, 1] than to [1, 0]
    assert nn_transfer_miou(train, np.array([0, 1]), test, np.array([0, 1, 1]), 2) == 1.0


def test_cpfs_evaluation_and_picture(tmp_path):
    from labelfree.data.synth_sprites import sprite_videos
    from labelfree.methods import get_method

    tr = sprite_videos("train", n_videos=3, frames=3, size=32)
    te = sprite_videos("test", n_videos=2, frames=3, size=32)
    m = get_method("cpfs", epochs=1, width=0.25, progress=False, device="cpu", pixels=64)
    m.fit(tr)
    metrics = m.evaluate(te, train=tr)
    assert set(metrics.representations) == {"cpfs", "random-net"}
    for row in metrics.representations.values():
        assert set(row) == {"probe_miou", "nn_miou", "group_auc"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    with pytest.raises(DataError, match="segmentation"):
        from labelfree.data.synthetic import arm_sequence

        m.evaluate(arm_sequence("test", n_videos=1, frames=3, size=32))
    m.draw_evaluation(tmp_path, te, metrics)
    assert (tmp_path / "flow.png").stat().st_size > 0


def test_cpfs_gradients_by_finite_differences():
    gen = torch.Generator().manual_seed(3)
    phi = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    flow = 0.1 * torch.randn(2, 4, 2, dtype=torch.float64, generator=gen)
    log_s2 = torch.tensor(math.log(0.0036), dtype=torch.float64, requires_grad=True)
    for objective in ("ce", "ce-rev", "kta"):
        assert torch.autograd.gradcheck(
            lambda p, s, o=objective: cpfs_loss(p, flow, o, s.exp()), (phi, log_s2)
        ), objective
    logits = torch.randn(2, 4, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: flow_classification_loss(z, flow, 4), (logits,))
