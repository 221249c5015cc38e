"""openTSNE's ``affinity`` module: turbotsne's affinity classes under openTSNE's names."""
import logging

from ..affinity import (Affinities, FixedSigmaNN, Multiscale, MultiscaleMixture, PerplexityBasedDense,  # noqa: F401
                        PerplexityBasedNN, PrecomputedAffinities, Uniform, check_perplexity, joint_probabilities_nn)

log = logging.getLogger("turbotsne.affinity")

__all__ = ["Affinities", "PerplexityBasedNN", "FixedSigmaNN", "Uniform", "MultiscaleMixture", "Multiscale",
           "PerplexityBasedDense", "PrecomputedAffinities", "joint_probabilities_nn", "check_perplexity"]
