"""Segmentation models behind one registry: ``create_model(name, num_classes=...)``."""
