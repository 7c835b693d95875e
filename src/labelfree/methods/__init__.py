"""The label-free methods, by name (see :mod:`labelfree.methods.registry`)."""

from __future__ import annotations

from labelfree.methods.base import Method, read_model_file
from labelfree.methods.cliquecnn import CliqueCNN
from labelfree.methods.cpfs import CPFS
from labelfree.methods.deepcluster import DeepCluster
from labelfree.methods.deepmatching import DeepMatching
from labelfree.methods.dense import EVC, Dense, DenseSym
from labelfree.methods.diffusion import Diffusion
from labelfree.methods.dnc import DivideConquer
from labelfree.methods.exemplar_cnn import ExemplarCNN
from labelfree.methods.frames import FrameMethod
from labelfree.methods.fse import FSE
from labelfree.methods.hadsell import Hadsell
from labelfree.methods.instdisc import InstanceDiscrimination
from labelfree.methods.mom import MoM
from labelfree.methods.posets import Posets
from labelfree.methods.registry import (
    available_methods,
    get_method,
    get_method_class,
    register_method,
    unregister_method,
)
from labelfree.methods.roul import ROUL
from labelfree.methods.stml import STML


def load_model(path: str, device: str = "auto") -> Method:
    """Load any saved model; the method is read from the file."""
    state = read_model_file(path)
    return get_method_class(state["method"]).load(path, device=device)


__all__ = [
    "Method",
    "FrameMethod",
    "FSE",
    "CPFS",
    "DeepMatching",
    "Dense",
    "DenseSym",
    "EVC",
    "Hadsell",
    "Diffusion",
    "DivideConquer",
    "DeepCluster",
    "ExemplarCNN",
    "InstanceDiscrimination",
    "MoM",
    "CliqueCNN",
    "Posets",
    "ROUL",
    "STML",
    "available_methods",
    "get_method",
    "get_method_class",
    "load_model",
    "register_method",
    "unregister_method",
]
