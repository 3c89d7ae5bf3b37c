"""medsam2-bench: evaluate promptable medical image segmentation under fixed prompt protocols."""

__version__ = "0.1.0"
