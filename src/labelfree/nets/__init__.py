"""Networks: backbones (built-in CNNs and pretrained adapters), global poolings and heads.

transformers, timm and torchvision are imported only when an adapter backbone is built.
"""

from labelfree.nets.backbones import available_backbones, build_backbone
from labelfree.nets.heads import EmbeddingNet, FeatureHeadNet, build_net
from labelfree.nets.pooling import make_pooling

__all__ = [
    "EmbeddingNet",
    "FeatureHeadNet",
    "available_backbones",
    "build_backbone",
    "build_net",
    "make_pooling",
]
