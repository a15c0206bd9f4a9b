"""Ianvs basemodel module: registers llseg's estimator ("llseg_deeplabv3") and its Sedna-side modules.

Importing ``llseg.ianvs.modules`` also applies the Sedna compatibility layer (docs/ianvs-compatibility.md).
"""
import llseg.ianvs.estimator  # noqa: F401
import llseg.ianvs.modules  # noqa: F401
