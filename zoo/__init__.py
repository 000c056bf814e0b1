"""zoo: a PyTorch Lightning model zoo for self-supervised representation learning across modalities."""

__version__ = "0.1.0"

from zoo.hub import from_pretrained  # noqa: E402
from zoo.registry import create_model, list_models, register_method  # noqa: E402
import zoo.methods  # noqa: E402,F401  (registers the methods)

__all__ = ["__version__", "create_model", "from_pretrained", "list_models", "register_method"]
