"""Datasets for the benchmark: one sub-package per dataset (``cityscapes``, ``voc``, ``isprs``:
layout reader, ``llseg prepare`` builder, synthetic generator) and, at this level, what they
share: label tables, splits, the manifest, the chunk scheme, index files, label writing, image
IO, the training dataset and transforms, predictions and the synthetic-generator skeleton."""
