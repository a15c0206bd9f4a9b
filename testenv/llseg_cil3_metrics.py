"""Ianvs metric module: importing llseg's metric functions registers "accuracy", "mIoU_task1", ..."""
import llseg.ianvs.metrics  # noqa: F401
