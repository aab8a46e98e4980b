"""Runners: one interface (activate / infer / deactivate) over torch, ONNX Runtime and TensorRT."""
