"""Harness overhead: a training step through gbench against a bare PyTorch loop.

Two settings, each with the same models, batch, SGAN losses, data and initial weights in both loops:
the toy MLP backbone on ring8 and the 32x32 CNN backbone (SN-GAN's standard CNN, spectral
normalisation in D) on CIFAR-10 images from ../shared/data/cifar10.npz (or $GBENCH_CIFAR10) if
present, else random images in [-1, 1]. Both loops get float data in [-1, 1]. The two loops are
timed in alternating rounds in one process and the median of each is compared.
Usage: python benchmarks/overhead.py [--steps 300] [--rounds 7] [--cnn-steps 1] [--cnn-rounds 11]
(--cnn-rounds 0 skips the CNN). Each setting prints its ratio of medians (and, as a check that is
robust to other processes loading the machine, of best rounds); the last line is the worst ratio of
medians over the settings.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gbench.backbones import CNNBackbone, MLPBackbone
from gbench.run.budget import Meter
from gbench.run.batched import Players, stack
from gbench.run.loop import BatchStream, Group, train
from gbench.suite import Budget
from gbench.datasets.toy import ring8
from gbench_plugins.sgan import SGAN

CIFAR10 = Path(os.environ.get("GBENCH_CIFAR10", Path(__file__).resolve().parents[2] / "shared/data/cifar10.npz"))


def make(backbone: Any, lr: float):
    torch.manual_seed(0)
    G, D = backbone.generator(), backbone.discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    return G, D, opt_g, opt_d


def run_gbench(backbone: Any, data: torch.Tensor, steps: int, batch: int, lr: float) -> float:
    """The harness's loop on a group of one trial (S = 1: the plain loop), the same nets and streams."""
    G, D, _, _ = make(backbone, lr)
    players = Players(stack([G]), stack([D]), "loop")
    opt_g = torch.optim.Adam(players.g.params.values(), lr=lr, betas=(0.5, 0.999), foreach=True)
    opt_d = torch.optim.Adam(players.d.params.values(), lr=lr, betas=(0.5, 0.999), foreach=True)
    group = Group(players, opt_g, opt_d, [BatchStream(data, batch, torch.Generator().manual_seed(1))],
                  [torch.Generator().manual_seed(2)], [torch.Generator().manual_seed(3)],
                  [torch.Generator().manual_seed(4)], backbone.z_dim)
    t0 = time.perf_counter()
    train(SGAN(), group, Budget(g_steps=steps, batch_size=batch), Meter(torch.device("cpu")),
          lambda step, active: None, set())
    return (time.perf_counter() - t0) / steps


def run_bare(backbone: Any, data: torch.Tensor, steps: int, batch: int, lr: float) -> float:
    G, D, opt_g, opt_d = make(backbone, lr)
    data_rng, z_rng = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    order, pos = torch.randperm(len(data), generator=data_rng), 0

    def next_batch() -> torch.Tensor:
        nonlocal order, pos
        if pos + batch > len(order):
            order, pos = torch.randperm(len(data), generator=data_rng), 0
        pos += batch
        return data[order[pos - batch : pos]]

    t0 = time.perf_counter()
    for _ in range(steps):
        x_real = next_batch()
        with torch.no_grad():
            x_fake = G(torch.randn(batch, backbone.z_dim, generator=z_rng))
        loss_d = F.softplus(-D(x_real)).mean() + F.softplus(D(x_fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        next_batch()  # gbench draws a real batch for the G step too (relativistic losses need one)
        x_fake = G(torch.randn(batch, backbone.z_dim, generator=z_rng))
        loss_g = F.softplus(-D(x_fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return (time.perf_counter() - t0) / steps


def compare(label: str, backbone: Any, data: torch.Tensor, steps: int, rounds: int, batch: int, lr: float,
            warmup: int) -> float:
    """Alternate bare and gbench rounds of ``steps`` steps; print and return the ratio of the medians."""
    run_gbench(backbone, data, warmup, batch, lr), run_bare(backbone, data, warmup, batch, lr)
    bare, ours = [], []
    for _ in range(rounds):
        bare.append(run_bare(backbone, data, steps, batch, lr))
        ours.append(run_gbench(backbone, data, steps, batch, lr))
    b, g = statistics.median(bare), statistics.median(ours)
    print(f"{label}, batch {batch}, {steps} steps x {rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"  bare PyTorch loop: {b * 1e3:.3f} ms/step (median), {min(bare) * 1e3:.3f} (best round)")
    print(f"  gbench loop:       {g * 1e3:.3f} ms/step (median), {min(ours) * 1e3:.3f} (best round)")
    print(f"  ratio gbench/bare: {g / b:.3f} (medians), {min(ours) / min(bare):.3f} (best rounds)", flush=True)
    return g / b


def images(n: int) -> tuple[torch.Tensor, str]:
    """``n`` float images (n, 3, 32, 32) in [-1, 1]: a random CIFAR-10 subset if the file is here."""
    if CIFAR10.exists():
        with np.load(CIFAR10) as npz:
            x = npz["x_train"]
        idx = np.random.default_rng(0).choice(len(x), size=min(n, len(x)), replace=False)
        x = torch.from_numpy(x[np.sort(idx)]).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous()
        return x, f"{len(x)} CIFAR-10 images"
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1, f"{n} random images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="toy MLP: steps per round")
    parser.add_argument("--rounds", type=int, default=7, help="toy MLP: rounds per loop")
    parser.add_argument("--batch", type=int, default=128, help="toy MLP: batch size")
    parser.add_argument("--cnn-steps", type=int, default=1, help="32x32 CNN: steps per round")
    parser.add_argument("--cnn-rounds", type=int, default=11, help="32x32 CNN: rounds per loop (0: skip)")
    parser.add_argument("--cnn-batch", type=int, default=32, help="32x32 CNN: batch size")
    parser.add_argument("--cnn-channels", type=int, default=64, help="32x32 CNN: g_channels = d_channels")
    parser.add_argument("--cnn-images", type=int, default=4096, help="32x32 CNN: training images")
    args = parser.parse_args()

    toy = MLPBackbone(z_dim=2, g_hidden=128, d_hidden=128, depth=3)
    data = ring8().sample(50_000, torch.Generator().manual_seed(0))
    ratios = [compare("toy MLP (3x128)", toy, data, args.steps, args.rounds, args.batch, 1e-3, warmup=50)]

    if args.cnn_rounds > 0:
        cnn = CNNBackbone(g_channels=args.cnn_channels, d_channels=args.cnn_channels)  # z_dim 128, SN in D
        x, what = images(args.cnn_images)
        label = f"32x32 CNN (standard CNN, {args.cnn_channels} channels, SN D), {what}"
        ratios.append(compare(label, cnn, x, args.cnn_steps, args.cnn_rounds, args.cnn_batch, 2e-4, warmup=1))
    print(f"ratio gbench/bare (worst of {len(ratios)} settings, medians): {max(ratios):.3f}")


if __name__ == "__main__":
    main()
