"""Self-supervised methods, one file each; importing this package registers them."""

from zoo.methods.base import SSLMethod, SSLOutput
from zoo.methods.byol import BYOL
from zoo.methods.dmt_jepa import DMTJEPA
from zoo.methods.ijepa import IJEPA
from zoo.methods.momentum import MomentumMethod
from zoo.methods.simclr import SimCLR
from zoo.methods.swav import SwAV

__all__ = ["BYOL", "DMTJEPA", "IJEPA", "MomentumMethod", "SSLMethod", "SSLOutput", "SimCLR", "SwAV"]
