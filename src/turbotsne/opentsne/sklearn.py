"""openTSNE's ``sklearn`` module: the scikit-learn estimator :class:`turbotsne.TSNE`."""
from ..estimator import TSNE  # noqa: F401

__all__ = ["TSNE"]
