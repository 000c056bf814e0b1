"""Self-supervised methods, one file each; importing this package registers them."""

from zoo.methods.base import SSLMethod, SSLOutput
from zoo.methods.simclr import SimCLR

__all__ = ["SSLMethod", "SSLOutput", "SimCLR"]
