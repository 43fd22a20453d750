"""N3 blocks: the image block (patches in a search window) and the set/sequence block."""

from n3net.blocks.n3_image import LogitsBatchNorm, N3Block2d
from n3net.blocks.n3_set import N3Block

__all__ = ["LogitsBatchNorm", "N3Block", "N3Block2d"]
