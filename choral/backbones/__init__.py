"""Member networks: plain ``nn.Module`` backbones whose output carries 2 channels per target."""

from choral.backbones.mlp import MLP, build_backbone

__all__ = ["MLP", "build_backbone"]
