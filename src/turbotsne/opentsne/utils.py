"""openTSNE's ``utils`` module: the helpers its users import."""
import importlib.util


def is_package_installed(name):
    """Whether the package ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


__all__ = ["is_package_installed"]
