"""llseg: lifelong (continual) semantic segmentation benchmarks for KubeEdge Ianvs.

Sub-packages: ``data`` (formats, labels, splits, synthetic data), ``models`` (ERFNet, DeepLabV3,
one registry), ``methods`` (continual-learning recipes and losses), ``metrics``, ``ianvs`` (the
only place that knows Sedna/Ianvs) and ``runner`` (the built-in benchmark runner).
"""
__version__ = "0.1.0"
