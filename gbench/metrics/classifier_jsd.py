"""Achieved JSD on images: the cross-fitted classifier bound (:mod:`gbench.metrics.classifier_bound`,
algorithms.md §8(b)) on fixed features.

The estimate is a LOWER bound in expectation: the classifier is not optimal, and features lose
information (JSD on features <= JSD on images); it is never evaluated in-sample, so overfitting cannot
push it up. It is kept raw (it can be slightly negative; clip at 0 only when displaying).

The metric ``classifier-jsd`` computes it between the reference images and the samples on the same
features as ``fidelity`` (same extractor configuration and code, reference features from the same
cache); :func:`image_jsd` does it for two arbitrary image sets (e.g. real vs perturbed real, for the
delta-controlled GAN's JSD(p, p_delta)).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl
from gbench.metrics import Metric
from gbench.metrics.classifier_bound import classifier_jsd_bits
from gbench.metrics.fidelity import FeatureConfig, Features, check_images, check_split, jsd_seed

# -- on images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifierJSDConfig(FeatureConfig):
    """``[eval.classifier-jsd]``: the feature settings of ``[eval.fidelity]`` (extractor, weights,
    cache_dir, batch_size, cuda) plus ``reference_split`` ("train"/"test"), ``feature_layer`` ("" = the
    extractor's FID layer, pool3 "2048" for Inception) and ``folds`` (cross-fitting folds)."""

    reference_split: str = "train"
    feature_layer: str = ""
    folds: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_split(self.reference_split)
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")


def _layer_and_folds(config: FeatureConfig) -> tuple[str, int]:
    layer = getattr(config, "feature_layer", None)
    if layer is None:
        layer = getattr(config, "feature_layer_fid", "")
    folds = getattr(config, "folds", None) or getattr(config, "jsd_folds", 5)
    return layer, int(folds)


class ClassifierJSDMetric(Metric):
    """Achieved JSD(reference, samples) in bits: cross-fitted classifier LOWER bound on fixed features.

    Keys ``jsd_bits``, ``jsd_ci_low``, ``jsd_ci_high`` (raw: may be slightly negative). The features
    (extractor, weights sha256, layer) are recorded in :meth:`protocol`; no ``nonstd_`` prefix, since
    the estimate is a lower bound on the images' JSD whatever the features.
    """

    name = "classifier-jsd"
    kinds = ("image",)
    Config = ClassifierJSDConfig

    def __init__(self, config: ClassifierJSDConfig | None = None) -> None:
        super().__init__(config)
        self._last: dict[str, Any] = {}

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        c = self.config
        seed = jsd_seed(rng)
        self._last = {}  # a failed evaluation must not leave an earlier one's record
        if getattr(dataset, "kind", None) != "image":
            raise GbenchError(f"classifier-jsd needs an image dataset, got kind {getattr(dataset, 'kind', None)!r}")
        images = check_images(samples, "classifier-jsd samples", getattr(dataset, "data_shape", None))
        layer, folds = _layer_and_folds(c)
        feats = Features(c, {"jsd": layer})
        layer = feats.layers["jsd"]
        gen = feats.of_images(images)[layer]
        ref, _, ref_info = feats.reference(dataset, c.reference_split, {layer}, None)
        est = _estimate(ref[layer].numpy(), gen.numpy(), folds, seed)
        self._last = {**feats.identity(), "reference": ref_info, "reference_split": c.reference_split,
                      "reference_size": ref_info["size"], "num_samples": len(images), "seed": seed,
                      "n_per_class": est["n_per_class"], "lower_bound": True}
        return {"jsd_bits": est["jsd_bits"], "jsd_ci_low": est["jsd_ci_low"], "jsd_ci_high": est["jsd_ci_high"]}

    def protocol(self) -> dict[str, Any]:
        return {**asdict(self.config), **self._last}


def _estimate(real: np.ndarray, fake: np.ndarray, folds: int, seed: int) -> dict[str, Any]:
    try:
        return classifier_jsd_bits(real, fake, folds=folds, seed=seed)
    except ValueError as exc:  # too few samples for the folds: a setting to change, not a crash
        raise GbenchError(f"classifier JSD: {exc}") from None


def image_jsd(images_a: Any, images_b: Any, config: FeatureConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Classifier JSD (bits, LOWER bound) between two uint8 (N, 3, H, W) image sets, on the features
    ``config`` selects (a :class:`ClassifierJSDConfig`, or the ``fidelity`` config: its FID layer and
    ``jsd_folds``). ``images_a`` plays "real". Returns :func:`classifier_jsd_bits`'s dict plus
    ``features`` (extractor, layer, weights path and sha256, standard flag)."""
    config = config if config is not None else ClassifierJSDConfig()
    a = check_images(images_a, "images_a")
    b = check_images(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image sets differ in shape: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    layer, folds = _layer_and_folds(config)
    feats = Features(config, {"jsd": layer})
    layer = feats.layers["jsd"]
    fa = feats.of_images(a)[layer].numpy()
    fb = feats.of_images(b)[layer].numpy()
    out = _estimate(fa, fb, folds, seed)
    out["features"] = feats.identity()
    return out


@hookimpl
def register_metrics(register: Any) -> None:
    register(ClassifierJSDMetric)
