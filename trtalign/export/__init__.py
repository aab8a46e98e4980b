"""Export: model adapters -> ONNX, decode + NMS nodes, calibration, Q/DQ, FP16 typing, ranges and calibration caches."""
