"""Member networks: backbones (MLP, U-Net, FNO), distribution heads, and stacked members.

Members live as one dict of parameters with a leading member axis (:mod:`.members`); a head
(:mod:`.heads`) turns their stacked outputs into a loss and a predictive distribution.
"""

from choral.networks.build import build_backbone, build_member, make_head
from choral.networks.config import FNOConfig, ModelConfig, UNetConfig
from choral.networks.fno import FNOBackbone
from choral.networks.heads import HEADS, GaussianHead, Head, MDNHead, QuantileHead
from choral.networks.mlp import MLP
from choral.networks.prior import PriorNet
from choral.networks.unet import UNet

__all__ = ["HEADS", "MLP", "FNOBackbone", "FNOConfig", "GaussianHead", "Head", "MDNHead",
           "ModelConfig", "PriorNet", "QuantileHead", "UNet", "UNetConfig", "build_backbone",
           "build_member", "make_head"]
