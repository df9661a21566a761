"""gbench: benchmark GAN variants under identical compute budgets.

The public API for plugin authors is everything imported here.
"""
from gbench.backbones import CNNBackbone, Logits, MLPBackbone, maybe_sn
from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl
from gbench.metrics import Metric
from gbench.plugins import get_plugins
from gbench.datasets.toy import ToyMixture
from gbench.variant import Nets, Variant, VariantConfig

__version__ = "0.1.0"

__all__ = [
    "CNNBackbone",
    "GbenchError",
    "Logits",
    "MLPBackbone",
    "Metric",
    "Nets",
    "ToyMixture",
    "Variant",
    "VariantConfig",
    "get_plugins",
    "hookimpl",
    "maybe_sn",
    "__version__",
]
