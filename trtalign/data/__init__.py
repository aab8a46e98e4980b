"""Data: datasets (COCO json, YOLO / OBB txt, DOTA txt) and the synthetic generator of labelled images."""
