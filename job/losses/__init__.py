"""Loss registry: a name -> loss Cell class. Each class says which batch layout it needs
(`layout`: shuffle | pk | triplet-tuples) and whether it trains a softmax head."""
from __future__ import annotations

from job.errors import ConfigError
from job.losses.quadruplet import QuadrupletBatchHardest, QuadrupletChen
from job.losses.softmax import SoftmaxCrossEntropy
from job.losses.triplet import TripletBatchHard, TripletFixed

LOSSES = {
    "softmax": SoftmaxCrossEntropy,
    "triplet-fixed": TripletFixed,                       # the reference's triplet
    "triplet-batch-hard": TripletBatchHard,              # Hermans et al. 2017
    "quadruplet-chen": QuadrupletChen,                   # Chen et al. 2017
    "quadruplet-batch-hardest": QuadrupletBatchHardest,  # the reference's "quadruplet"
}


def create_loss(name: str, **params):
    """Instantiate a loss by name with its keyword parameters (margin, margin2, ...)."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name](**params)


__all__ = ["LOSSES", "create_loss", "SoftmaxCrossEntropy", "TripletFixed", "TripletBatchHard",
           "QuadrupletChen", "QuadrupletBatchHardest"]
