"""Ianvs metric module for any split: importing llseg's metric functions registers "accuracy",
"mIoU_old", "mIoU_new", "mIoU_all", "hIoU", "mIoU_task1", ... (docs/metrics.md)."""
import llseg.ianvs.metrics  # noqa: F401
