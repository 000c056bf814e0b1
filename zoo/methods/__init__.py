"""Self-supervised methods, one file each; importing this package registers them."""

from zoo.methods.base import SSLMethod, SSLOutput
from zoo.methods.byol import BYOL
from zoo.methods.momentum import MomentumMethod
from zoo.methods.simclr import SimCLR
from zoo.methods.slap import SLAP
from zoo.methods.swav import SwAV

__all__ = ["BYOL", "MomentumMethod", "SSLMethod", "SLAP", "SSLOutput", "SimCLR", "SwAV"]
