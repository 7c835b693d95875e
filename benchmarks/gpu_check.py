"""GPU check (``make gpu-check``): the CUDA path agrees with the CPU path, and how fast it trains.

    python benchmarks/gpu_check.py [--device cuda] [--quick]

1. Agreement on a tiny input (40 digits at 32 px), the same weights on both devices:
   MoM with the ResNet-18 backbone — embeddings on CUDA in fp32 and under bf16 autocast against
   the CPU's fp32 ones, and the loss of one identical training batch; the ``dense`` frame method
   — its per-pixel maps likewise.
2. Training throughput (images/s, bf16 autocast): ``labelfree`` MoM (ResNet-18, batch 128,
   mnist5k at 64 px) beside a plain pytorch-metric-learning loop on the same backbone, batch and
   images (TripletMarginLoss with a semi-hard TripletMarginMiner), and the ``dense`` frame
   method on synthetic faces. The ratio labelfree / plain says what the structure step, the
   sampler and the loop cost on top of the network.

Not part of the tests (CI has no GPU). On a machine without CUDA, ``--device cpu --quick``
runs the same code as a smoke test. About 3 minutes on one modern GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402
from labelfree.data.bundled import digits, mnist5k  # noqa: E402
from labelfree.data.synthetic import synthetic_faces  # noqa: E402
from labelfree.methods import get_method  # noqa: E402


def _to(m, device: str):
    m.net_.to(device)
    return m


def agreement(device: str) -> list[dict]:
    rows = []
    data = digits("train", image_size=32).per_class(8, seed=0)
    mom = get_method(
        "mom",
        start="scratch",
        features="pixels",
        backbone="resnet18",
        epochs=1,
        batch_size=16,
        k_graph=5,
        k_pos=3,
        k_neg=6,
        device="cpu",
        progress=False,
        cache=False,
    ).fit(data)
    z_cpu = mom.embed(data)
    _to(mom, device)
    z_gpu = mom.embed(data)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device != "cpu"):
        z_bf16 = mom.embed(data)
    rows.append(_compare("mom resnet18 embeddings, fp32", z_cpu, z_gpu, tol=1e-3))
    rows.append(_compare("mom resnet18 embeddings, bf16 autocast", z_cpu, z_bf16, tol=5e-2))
    # one identical batch: the loss on both devices
    x = data.tensor(np.arange(16))
    losses = []
    for dev in ("cpu", device):
        net = mom.net_.to(dev).train()
        torch.manual_seed(0)
        emb = net(x.to(dev))
        a, p, n = emb[:8:2], emb[1:8:2], emb[8:16:2]
        loss = torch.relu((a - p).pow(2).sum(1) - (a - n).pow(2).sum(1) + 0.5).mean()
        losses.append(float(loss))
    rows.append(
        _compare("mom one-batch triplet loss", np.array(losses[:1]), np.array(losses[1:]), tol=1e-3)
    )

    faces = synthetic_faces("train", n=16, size=32)
    dense = get_method("dense", epochs=1, batch_size=8, width=0.5, device="cpu", progress=False)
    dense.fit(faces)
    with torch.no_grad():
        m_cpu = dense.maps(faces).numpy()
        dense.net_.to(device)
        m_gpu = dense.maps(faces).numpy()
    rows.append(_compare("dense maps, fp32", m_cpu, m_gpu, tol=1e-3))
    return rows


def _compare(what: str, a: np.ndarray, b: np.ndarray, tol: float) -> dict:
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    return {"check": what, "max |cpu - device|": f"{diff:.2e}", "tolerance": tol, "ok": diff <= tol}


def throughput(device: str, quick: bool) -> list[dict]:
    from pytorch_metric_learning import losses, miners

    from labelfree.nets.heads import EmbeddingNet

    size = 32 if quick else 64
    data = mnist5k("train", image_size=size)
    if quick:
        data = data.per_class(40, seed=0)
    epochs = 1 if quick else 3
    amp = device != "cpu"
    seen_by_net = [0]

    def count(module, args):  # images the embedding network sees in training mode
        if isinstance(module, EmbeddingNet) and module.training:
            seen_by_net[0] += int(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    m = get_method(
        "mom",
        start="scratch",
        features="pixels",
        backbone="resnet18",
        epochs=epochs,
        batch_size=128,
        device=device,
        amp=amp,
        progress=False,
        cache=False,
    ).fit(data)
    handle.remove()
    secs = sum(r["seconds"] for r in m.history_ if r.get("stage") == "mom")
    lf_rate = seen_by_net[0] / secs  # the epochs' wall time, the embedding passes included

    # the plain pytorch-metric-learning loop on the same backbone and batch
    net = EmbeddingNet("resnet18", dim=64).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = losses.TripletMarginLoss(margin=0.1)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    labels = torch.as_tensor(data.labels)
    rng = np.random.default_rng(0)
    steps = max(1, len(data) // 128) * epochs
    t0 = time.perf_counter()
    seen = 0
    for _ in range(steps):
        # 3 x 128 images: at least as many as a MoM batch of 128 tuples embeds
        idx = rng.choice(len(data), min(3 * 128, len(data)), replace=False)
        x = data.tensor(idx).to(device, non_blocking=True)
        y = labels[idx].to(device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            emb = net(x).float()
        loss = loss_fn(emb, y, miner(emb, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
    if device != "cpu":
        torch.cuda.synchronize()
    plain_rate = seen / (time.perf_counter() - t0)

    faces = synthetic_faces("train", n=64 if quick else 1000, size=size)
    dense = get_method("dense", epochs=1, batch_size=32, device=device, amp=amp, progress=False)
    dense.fit(faces)
    d_secs = sum(r["seconds"] for r in dense.history_)
    return [
        {
            "loop": f"labelfree mom, resnet18, {size}px",
            "images/s": round(lf_rate, 1),
            "plain pml loop images/s": round(plain_rate, 1),
            "ratio": round(lf_rate / plain_rate, 3),
        },
        {
            "loop": f"labelfree dense, simple net, {size}px",
            "images/s": round(2 * len(faces) / d_secs, 1),
            "plain pml loop images/s": "-",
            "ratio": "-",
        },
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; run with --device cpu --quick for a smoke test")
        sys.exit(2)
    t0 = time.perf_counter()
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rows = agreement(args.device)
    print_table(
        rows, ["check", "max |cpu - device|", "tolerance", "ok"], "CPU vs device, same weights"
    )
    speed = throughput(args.device, args.quick)
    print_table(
        speed,
        ["loop", "images/s", "plain pml loop images/s", "ratio"],
        f"training throughput on {args.device}",
    )
    print(f"total {time.perf_counter() - t0:.0f} s")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
