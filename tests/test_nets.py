"""Poolings, backbones, heads, pretrained adapters and the backbone feature extractor."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelfree.data.imageset import ImageSet
from labelfree.nets import (
    EmbeddingNet,
    FeatureHeadNet,
    build_backbone,
    build_net,
    make_pooling,
)
from labelfree.nets.pooling import rmac_regions

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- pooling


def test_gem_p1_is_average_and_large_p_tends_to_mac() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 5, 6, 7, dtype=torch.float64) + 0.1
    avg = make_pooling("avg")(x)
    mac = make_pooling("mac")(x)
    torch.testing.assert_close(make_pooling("gem", p=1.0)(x), avg)
    err = [(make_pooling("gem", p=p)(x) - mac).abs().max().item() for p in (3.0, 30.0, 300.0)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.02
    assert torch.all(make_pooling("gem", p=300.0)(x) <= mac + 1e-9)


def test_gem_learnable_p_gets_a_gradient() -> None:
    gem = make_pooling("gem", learnable=True)
    assert [n for n, _ in gem.named_parameters()] == ["p"]
    gem(torch.rand(2, 3, 4, 4) + 0.1).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0
    assert "p" in make_pooling("gem").state_dict()  # a buffer when fixed


def test_mac_is_amax_and_avg_is_mean() -> None:
    x = torch.randn(3, 8, 5, 4)
    assert torch.equal(make_pooling("mac")(x), x.amax(dim=(2, 3)))
    torch.testing.assert_close(make_pooling("avg")(x), x.mean(dim=(2, 3)))


def test_rmac_matches_hand_computation_on_3x3_map() -> None:
    # On a 3×3 map, L = 3 gives: the whole map (l=1), four 2×2 windows (l=2, side ⌊6/3⌋),
    # nine single cells (l=3, side ⌊6/4⌋).
    rng = np.random.default_rng(1)
    fmap = rng.random((2, 3, 3))  # (C, h, w)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    total = unit(fmap.max(axis=(1, 2)))
    for top in (0, 1):
        for left in (0, 1):
            total = total + unit(fmap[:, top : top + 2, left : left + 2].max(axis=(1, 2)))
    for i in range(3):
        for j in range(3):
            total = total + unit(fmap[:, i, j])
    expected = unit(total)

    got = make_pooling("rmac")(torch.from_numpy(fmap)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isclose(np.linalg.norm(got), 1.0)


def test_rmac_regions_on_wide_map_overlap_along_long_side() -> None:
    # 3×5: the l=1 square (side 3) fits twice with ~1/3 overlap (closest to 40 %), at cols 0, 2.
    boxes = rmac_regions(3, 5)
    assert [b for b in boxes if b[2] == 3] == [(0, 0, 3, 3), (0, 2, 3, 3)]
    assert all(t + s <= 3 and left + s <= 5 for t, left, s, _ in boxes)
    assert len(rmac_regions(7, 7)) == 14


def test_unknown_pooling_lists_choices() -> None:
    with pytest.raises(ValueError, match="avg, mac, gem, rmac"):
        make_pooling("median")


# --------------------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("small", 28, (256, 3, 3)),
        ("small", 32, (256, 4, 4)),
        ("small", 64, (256, 8, 8)),
        ("resnet18", 28, (512, 4, 4)),
        ("resnet18", 32, (512, 4, 4)),
        ("resnet18", 64, (512, 8, 8)),
    ],
)
def test_builtin_backbone_output_shapes(name: str, size: int, expected: tuple) -> None:
    net = build_backbone(name).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert tuple(out.shape) == (2, *expected)
    assert net.out_channels == expected[0]


def test_backbone_width_and_large_input_stem() -> None:
    assert build_backbone("small", width=0.5).out_channels == 128
    big = build_backbone("resnet18", width=0.25, image_size=128).eval()
    assert not big.small_input
    with torch.no_grad():
        assert tuple(big(torch.rand(1, 3, 128, 128)).shape) == (1, 128, 4, 4)
    assert build_backbone("resnet18", width=0.25).small_input  # unknown size: small stem


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(ValueError, match="small, resnet18"):
        build_backbone("vgg99")


# --------------------------------------------------------------------------- heads


def test_embedding_net_unit_norm_and_config_round_trip() -> None:
    torch.manual_seed(0)
    net = EmbeddingNet("small", dim=16, pooling="gem", width=0.25).eval()
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        z = net(x)
        pooled = net.pooled(x)
    assert z.shape == (3, 16) and pooled.shape == (3, net.feature_dim)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))

    cfg = json.loads(json.dumps(net.config()))
    assert cfg == {
        "type": "embedding",
        "backbone": "small",
        "dim": 16,
        "pooling": "gem",
        "normalize": True,
        "width": 0.25,
    }
    twin = build_net(cfg).eval()
    with torch.no_grad():
        assert not torch.allclose(twin(x), z)  # fresh random weights differ ...
        twin.load_state_dict(net.state_dict())
        assert torch.equal(twin(x), z)  # ... and the loaded ones reproduce the original


def test_feature_head_shapes_round_trip_and_identity_like_start() -> None:
    torch.manual_seed(0)
    head = FeatureHeadNet(40, dim=8, hidden=32, depth=3, dropout=0.1).eval()
    g = torch.randn(5, 40)
    with torch.no_grad():
        z = head(g)
        # untrained: the last MLP layer is zero, so the output is the orthogonal projection
        torch.testing.assert_close(z, F.normalize(g @ head.linear.weight.T, dim=1))
    assert z.shape == (5, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    cfg = head.config()
    assert cfg["type"] == "feature-head" and cfg["depth"] == 3 and cfg["skip"] is True
    twin = build_net(json.loads(json.dumps(cfg))).eval()
    twin.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert torch.equal(twin(g), z)
    plain = FeatureHeadNet(40, dim=8, depth=1, normalize=False, skip=False)
    assert plain(g).shape == (5, 8) and plain.linear is None


def test_feature_head_pca_init_preserves_distances_and_trains() -> None:
    # Points on a 6-d affine subspace of R^30 far from the origin: the centred PCA projection
    # to 8 dims is an isometry of the data, while the raw vectors are nearly parallel.
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((30, 6)))[0]
    g = (rng.standard_normal((200, 6)) @ basis.T + 20.0).astype(np.float32)
    head = FeatureHeadNet(30, dim=8, hidden=16, normalize=False)
    head.init_from_features(g, whiten=None).eval()
    with torch.no_grad():
        z = head(torch.from_numpy(g)).double()
    torch.testing.assert_close(
        torch.cdist(z, z), torch.cdist(*(torch.from_numpy(g).double(),) * 2), atol=1e-3, rtol=1e-4
    )
    torch.testing.assert_close(z.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-3, rtol=0)

    # Gradients reach the zero-initialised last layer, then the hidden layers.
    head.train()
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    first = head.mlp[0].weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        head(torch.from_numpy(g[:32])).pow(2).sum().backward()
        opt.step()
    assert head.mlp[-1].weight.abs().sum() > 0
    assert not torch.equal(head.mlp[0].weight, first)


def test_build_net_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="embedding, feature-head"):
        build_net({"type": "transformer"})


# --------------------------------------------------------------------------- adapters


@pytest.fixture(scope="module")
def tiny_hf_models(tmp_path_factory: pytest.TempPathFactory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    resnet = transformers.ResNetModel(
        transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    ).eval()
    vit = transformers.ViTModel(
        transformers.ViTConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    dirs = {}
    for name, model in (("resnet", resnet), ("vit", vit)):
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d)
        dirs[name] = d
    return {"resnet": (resnet, dirs["resnet"]), "vit": (vit, dirs["vit"])}


def test_hf_conv_model_gives_its_feature_map(tiny_hf_models) -> None:
    model, path = tiny_hf_models["resnet"]
    net = build_backbone("hf:" + str(path)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
        ref = model(pixel_values=(x - IMAGENET_MEAN) / IMAGENET_STD).last_hidden_state
    assert net.out_channels == 16 and out.shape == (2, 16, 4, 4)
    torch.testing.assert_close(out, ref)


def test_hf_vit_tokens_become_a_grid(tiny_hf_models) -> None:
    model, path = tiny_hf_models["vit"]
    net = build_backbone("hf:" + str(path)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
        tokens = model(pixel_values=(x - IMAGENET_MEAN) / IMAGENET_STD).last_hidden_state
        small = net(torch.rand(2, 3, 28, 28))  # resized to the model's 32 px
    assert net.out_channels == 16 and out.shape == (2, 16, 4, 4) and small.shape == out.shape
    # patch token k (row-major over the 4×4 grid) sits at (k // 4, k % 4); CLS is dropped
    torch.testing.assert_close(out[:, :, 1, 2], tokens[:, 1 + 4 * 1 + 2, :])
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), tokens[:, 1:, :])


def test_hf_preprocessor_mean_std_are_used(tiny_hf_models, tmp_path) -> None:
    model, path = tiny_hf_models["resnet"]
    for f in path.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    pre = {
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"height": 48, "width": 48},
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    net = build_backbone("hf:" + str(tmp_path)).eval()
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(pixel_values=(x - 0.5) / 0.5).last_hidden_state)
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 16, 6, 6)  # resized to 48 px


def test_hf_missing_local_model_is_a_clear_error(tmp_path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(OSError, match="folder not found"):
        build_backbone("hf:" + str(tmp_path / "nothing-here"))
    with pytest.raises(OSError, match="allow_download"):
        build_backbone("hf:no-such-org/no-such-model")  # a hub id, not in the local cache


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
def test_missing_optional_library_says_how_to_install(lib: str) -> None:
    try:
        importlib.import_module(lib)
        pytest.skip(f"{lib} is importable here")
    except ImportError:
        pass
    except Exception:  # installed but broken also gets the install hint
        pass
    with pytest.raises(ImportError, match=rf"pip install 'labelfree\[{lib}\]'"):
        build_backbone(f"{lib}:resnet18", weights=None)


# --------------------------------------------------------------------------- extractor


def _images(n: int = 6, size: int = 28, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), name="rand")


def test_backbone_extractor_shape_determinism_and_warning() -> None:
    from labelfree.features.backbone import BackboneExtractor

    images = _images()
    with pytest.warns(UserWarning, match="random weights"):
        a = BackboneExtractor("small", pooling="rmac", seed=3, batch_size=4, width=0.25)
        fa = a.transform(images)
    assert fa.shape == (6, 64) and fa.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fa, axis=1), 1.0, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fb = BackboneExtractor("small", pooling="rmac", seed=3, batch_size=5, width=0.25)
        fc = BackboneExtractor("small", pooling="rmac", seed=4, batch_size=4, width=0.25)
        np.testing.assert_allclose(fb.transform(images), fa, atol=1e-6)
        assert not np.allclose(fc.transform(images), fa, atol=1e-3)
    assert a.config()["seed"] == 3 and a.config()["width"] == 0.25
    assert fb.key() == a.key() != fc.key()  # the batch size does not change the features


def test_backbone_extractor_loads_weights_and_keys_on_content(tmp_path) -> None:
    from labelfree.features.backbone import BackboneExtractor

    torch.manual_seed(7)
    net = EmbeddingNet("small", dim=8, pooling="mac", width=0.25).eval()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)  # an EmbeddingNet checkpoint: backbone.* keys
    images = _images(seed=1)
    ext = BackboneExtractor("small", pooling="mac", weights=str(path), width=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no random-weights warning with weights
        feats = ext.transform(images)
    with torch.no_grad():
        expected = F.normalize(net.pooled(images.tensor()), dim=1).numpy()
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    assert ext.config()["weights"] == str(path)

    key = ext.key()
    torch.manual_seed(8)
    torch.save(EmbeddingNet("small", dim=8, width=0.25).state_dict(), path)
    assert BackboneExtractor("small", pooling="mac", weights=str(path), width=0.25).key() != key
