"""openTSNE's ``callbacks`` module: turbotsne's callbacks."""
from ..callbacks import Callback, ErrorLogger, VerifyExaggerationError  # noqa: F401

__all__ = ["Callback", "ErrorLogger", "VerifyExaggerationError"]
