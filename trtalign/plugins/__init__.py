"""Plugins: Python reference NMS ops, ONNX Runtime custom ops, the CUDA/C++ TensorRT plugin sources and build helper."""
