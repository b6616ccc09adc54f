"""Training methods by config section: `supcon` (SupCon or SimCLR), `ce`, `linear`.

A method's module is imported only when it trains: a stage's run key holds the digest of every
module it imported (pipeline/provenance.py), so an edit to the SupCon loss must not retrain the
CE baseline.
"""

import importlib
from collections.abc import Callable

from pipeline.methods.parts import MethodInputs, MethodParts

METHODS: dict[str, str] = {
    "supcon": "pipeline.methods.contrastive:contrastive",
    "ce": "pipeline.methods.cross_entropy:cross_entropy",
    "linear": "pipeline.methods.linear_probe:linear_probe",
}


def method(section: str) -> Callable[[MethodInputs], MethodParts]:
    """The set-up function of the method trained by config section `section`."""
    if section not in METHODS:
        raise ValueError(f"unknown training method {section!r}; known: {', '.join(METHODS)}")
    module, name = METHODS[section].split(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["METHODS", "MethodInputs", "MethodParts", "method"]
