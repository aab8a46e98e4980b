"""Quantization tuning: per-unit INT8 sensitivity, the fallback search, the tuning session and its report."""
