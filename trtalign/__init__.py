"""trtalign: take a YOLO detector from PyTorch to TensorRT and measure what every step costs.

Importing the package has no side effects and imports no heavy dependency (torch, tensorrt, pycuda, cuda-python).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
