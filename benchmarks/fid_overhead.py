"""FID/IS overhead: gbench's ``fidelity`` metric against a direct ``torch_fidelity.calculate_metrics`` call.

Same inputs for both: N CIFAR-10 train images as the "generated" set and N CIFAR-10 test images as the
reference (from ../shared/data/cifar10.npz, or ``--npz``; seeded random subsets), else synthetic
images. The extractor is torch-fidelity's Inception (``inception-v3-compat``) when
``GBENCH_INCEPTION_WEIGHTS`` points at its weights, else a small deterministic conv net registered
here (256-d features, 1008 logits); the script says which.

Timing protocol (stated again in the output):
* reference cache WARM for both: each side's input2 cache entry (features and FID statistics of the
  reference) is made once before timing, in the same cache root;
* everything in-process is COLD for gbench in every round: its extractor, remembered sample features
  and weight hashes are dropped (``fidelity.clear_caches()``), as a first evaluation in a new process
  would be; the direct call builds its extractor every time anyway;
* the same loader settings on both sides: in-memory tensors, no loader worker processes
  (``save_cpu_ram=True``; ``--direct-default-loader`` gives torch-fidelity its default 4 workers);
* each round times gbench and the direct call back to back (order alternating, ABBA) in one process;
  the last line is the median of the per-round ratios (load from other processes mostly cancels
  within a round); medians and minima of each side are printed too.

The values must agree (asserted, rel. 1e-6). The last line is ``ratio gbench/direct: X.XX`` (goal <= 1.05).
Usage: python benchmarks/fid_overhead.py [--n 1000] [--rounds 6] [--kid]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gbench.metrics import fidelity
from gbench.metrics.fidelity import FidelityConfig, FidelityMetric, UInt8Images

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.npz"  # ../shared beside the repo
BENCH_NET = "gbench-bench-net"


class BenchNet(torch_fidelity.FeatureExtractorBase):
    """A small deterministic conv net standing in for Inception: "feat" (256) and "logits_unbiased" (1008).

    About 43 M multiply-adds per 32x32 image (Inception at 299x299: about 5.7 G), so the extractor still
    dominates a call as it does in real use, yet 1000 images take about a second on 2 CPU cores."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.Conv2d(64, 128, 3, padding=1), nn.Conv2d(128, 256, 3, stride=2, padding=1)])
        self.fc = nn.Linear(256, 1008, bias=False)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return ("feat", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        h = x.to(torch.float32) / 127.5 - 1.0
        for conv in self.convs:
            h = F.relu(conv(h))
        feat = h.mean(dim=(2, 3))
        logits = self.fc(feat / (feat.norm(dim=1, keepdim=True) + 1e-6)) * 30.0  # confident enough for IS > 1
        out = {"feat": feat, "logits_unbiased": logits}
        return tuple(out[k] for k in self.features_list)


class Reference:
    """The dataset interface gbench's image metrics use: kind, name, data_shape, images(split), provenance."""

    kind = "image"

    def __init__(self, name: str, test: torch.Tensor, provenance: dict) -> None:
        self.name, self._test, self.provenance = name, test, provenance
        self.data_shape = tuple(test.shape[1:])

    def images(self, split: str) -> torch.Tensor:
        assert split == "test"
        return self._test.clone()


def load_images(n: int, npz: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    rng = np.random.default_rng(0)
    if npz.is_file():
        with np.load(npz) as d:
            tr = d["x_train"][np.sort(rng.choice(len(d["x_train"]), n, replace=False))]
            te = d["x_test"][np.sort(rng.choice(len(d["x_test"]), n, replace=False))]
        to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        return to_nchw(tr), to_nchw(te), f"{npz} ({n} train as generated, {n} test as reference)"
    g = torch.Generator().manual_seed(0)
    gen = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    ref = (F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear") * 255).to(torch.uint8)
    return gen, ref, f"synthetic ({npz} not found): {n} noise images vs {n} smooth images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="images per side (default 1000; 200 with Inception)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--kid", action="store_true", help="also KID (subset size min(1000, n), 100 subsets)")
    ap.add_argument("--npz", type=Path, default=CIFAR)
    ap.add_argument("--direct-default-loader", action="store_true",
                    help="give the direct call torch-fidelity's default loader (4 worker processes)")
    args = ap.parse_args()

    weights = os.environ.get(fidelity.WEIGHTS_ENV, "")
    if weights:
        extractor, n = fidelity.STANDARD_EXTRACTOR, args.n or 200
        print(f"extractor: {extractor} with weights {weights} (from {fidelity.WEIGHTS_ENV})")
    else:
        if BENCH_NET not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(BENCH_NET, BenchNet)
        extractor, n = BENCH_NET, args.n or 1000
        print(f"extractor: {BENCH_NET} (small test conv net; set {fidelity.WEIGHTS_ENV} to use Inception)")
    gen, ref_images, source = load_images(n, args.npz)
    print(f"images: {source}; torch {torch.__version__}, torch-fidelity {torch_fidelity.__version__}, "
          f"{torch.get_num_threads()} threads")
    kid_size = min(1000, n)
    reference = Reference("cifar10-bench", ref_images, {"source": source, "n": n})

    with tempfile.TemporaryDirectory() as tmp:
        config = FidelityConfig(feature_extractor=extractor, weights=weights, cache_dir=tmp, reference_split="test",
                                kid=args.kid, kid_subset_size=kid_size)
        samples = gen.numpy()

        def run_gbench() -> dict[str, float]:
            fidelity.clear_caches()  # cold in-process state every round (extractor, sample features, hashes)
            return FidelityMetric(config).compute(samples, reference, np.random.default_rng(0))

        direct_kw = dict(
            input1=UInt8Images(gen), input2=UInt8Images(ref_images), input2_cache_name="bench-direct-reference",
            cache_root=str(Path(tmp) / "fidelity"), cuda=False, batch_size=64, isc=True, fid=True, kid=args.kid,
            kid_subset_size=kid_size, feature_extractor=extractor, feature_extractor_weights_path=weights or None,
            save_cpu_ram=not args.direct_default_loader, verbose=False)

        def run_direct() -> dict[str, float]:
            return torch_fidelity.calculate_metrics(**direct_kw)

        # warm both reference caches (and check the values agree)
        ours, theirs = run_gbench(), run_direct()
        prefix = "" if fidelity.is_official_inception(fidelity.sha256_file(weights) if weights else None) and \
            extractor == fidelity.STANDARD_EXTRACTOR else fidelity.NONSTD_PREFIX
        pairs = {"fid": "frechet_inception_distance", "isc_mean": "inception_score_mean",
                 "isc_std": "inception_score_std"}
        if args.kid:
            pairs.update(kid_mean="kernel_inception_distance_mean", kid_std="kernel_inception_distance_std")
        for key, tkey in pairs.items():
            a, b = ours[prefix + key], theirs[tkey]
            assert abs(a - b) <= 1e-6 * abs(b) + 1e-12, f"{key}: gbench {a!r} != direct {b!r}"
            print(f"  {prefix + key:>18s} = {a:.8g}   direct {tkey} = {b:.8g}")
        print("values agree (rel. 1e-6)")

        t_gb, t_tf = [], []
        for r in range(args.rounds):  # ABBA order: neither side always runs first
            for fn, times in ((run_gbench, t_gb), (run_direct, t_tf))[:: 1 if r % 2 == 0 else -1]:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    loader = "torch-fidelity default (4 workers)" if args.direct_default_loader else "no workers, as gbench"
    print(f"protocol: reference cache warm for both; gbench in-process caches cleared every round; "
          f"direct loader: {loader}; {args.rounds} rounds in ABBA order")
    for label, t in (("gbench fidelity", t_gb), ("direct calculate_metrics", t_tf)):
        print(f"{label}: min {min(t):.3f} s, median {statistics.median(t):.3f} s  "
              f"(rounds {', '.join(f'{x:.3f}' for x in t)})")
    pairs_ratio = [a / b for a, b in zip(t_gb, t_tf)]
    print(f"ratio of medians {statistics.median(t_gb) / statistics.median(t_tf):.2f}, of minima "
          f"{min(t_gb) / min(t_tf):.2f}; per-round ratios {', '.join(f'{x:.2f}' for x in pairs_ratio)}")
    print("ratio below: median of the per-round ratios (each round times both sides back to back, so load "
          "from other processes mostly cancels)")
    print(f"ratio gbench/direct: {statistics.median(pairs_ratio):.2f}")
    sys.stdout.flush()

if __name__ == "__main__":
    main()
