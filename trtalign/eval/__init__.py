"""Evaluation: datasets, COCO and rotated mAP, alignment, precision emulation runs, sensitivity, fallback, reports."""
