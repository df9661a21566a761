"""Harness overhead: a training step through gbench against a bare PyTorch loop.

Same models (the toy MLP backbone), same batch, same SGAN losses, same data and initial weights;
the two are timed in alternating rounds in one process and the median of each is compared.
Usage: python benchmarks/overhead.py [--steps 300] [--rounds 7]. The last line is the ratio.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from gbench.backbones import MLPBackbone
from gbench.budget import Meter
from gbench.loop import BatchStream, train
from gbench.suite import Budget
from gbench.toy import ring8
from gbench.variant import Nets
from gbench_plugins.sgan import SGAN


def make(backbone: MLPBackbone, batch: int):
    torch.manual_seed(0)
    G, D = backbone.generator(), backbone.discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    return G, D, opt_g, opt_d


def run_gbench(backbone: MLPBackbone, data: torch.Tensor, steps: int, batch: int) -> float:
    G, D, opt_g, opt_d = make(backbone, batch)
    stream = BatchStream(data, batch, torch.Generator().manual_seed(1))
    z_rng = torch.Generator().manual_seed(2)
    t0 = time.perf_counter()
    train(SGAN(), Nets(G, D), opt_g, opt_d, stream, lambda: torch.randn(batch, backbone.z_dim, generator=z_rng),
          torch.Generator().manual_seed(3), Budget(g_steps=steps, batch_size=batch), Meter(torch.device("cpu")),
          lambda step: None, set())
    return (time.perf_counter() - t0) / steps


def run_bare(backbone: MLPBackbone, data: torch.Tensor, steps: int, batch: int) -> float:
    G, D, opt_g, opt_d = make(backbone, batch)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    backbone = MLPBackbone(z_dim=2, g_hidden=128, d_hidden=128, depth=3)
    data = ring8().sample(50_000, torch.Generator().manual_seed(0))
    run_gbench(backbone, data, 50, args.batch), run_bare(backbone, data, 50, args.batch)  # warm-up
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(run_bare(backbone, data, args.steps, args.batch))
        ours.append(run_gbench(backbone, data, args.steps, args.batch))
    b, g = statistics.median(bare), statistics.median(ours)
    print(f"toy MLP (3x128), batch {args.batch}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"bare PyTorch loop: {b * 1e3:.3f} ms/step (median)")
    print(f"gbench loop:       {g * 1e3:.3f} ms/step (median)")
    print(f"ratio gbench/bare: {g / b:.3f}")


if __name__ == "__main__":
    main()
