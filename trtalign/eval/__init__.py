"""Evaluation: COCO and rotated mAP, alignment between runners, precision emulation runs, reports."""
