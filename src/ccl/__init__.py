"""ccl: Compositional Contrastive Learning (Chen et al., CVPR 2021) for video students."""

__version__ = "0.1.0"
