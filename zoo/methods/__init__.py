"""Self-supervised methods, one file each; importing this package registers them."""

from zoo.methods.base import SSLMethod, SSLOutput
from zoo.methods.byol import BYOL
from zoo.methods.dmt_jepa import DMTJEPA
from zoo.methods.ijepa import IJEPA
from zoo.methods.momentum import MomentumMethod
from zoo.methods.simclr import SimCLR
from zoo.methods.skeleton_mae import SkeletonMAE
from zoo.methods.slap import SLAP
from zoo.methods.swav import SwAV
from zoo.methods.tjepa import TJEPA

__all__ = [
    "BYOL", "DMTJEPA", "IJEPA", "MomentumMethod", "SLAP", "SSLMethod", "SSLOutput", "SimCLR", "SkeletonMAE", "SwAV",
    "TJEPA",
]
