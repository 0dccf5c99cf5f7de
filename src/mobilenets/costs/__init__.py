"""Exact parameters and mult-adds of a model from its config alone (`analysis`), cross-checked
against forward hooks, and their tables (`render`).

The package is `costs`, not `cost`: `mobilenets.cost` is the function the README imports, and a
subpackage of that name would replace it as an attribute of `mobilenets` once imported."""

from .analysis import (
    CostReport,
    LayerCost,
    SeparableComparison,
    cost,
    hook_costs,
    layer_costs,
    separable_vs_standard,
)

__all__ = [
    "CostReport",
    "LayerCost",
    "SeparableComparison",
    "cost",
    "hook_costs",
    "layer_costs",
    "separable_vs_standard",
]
