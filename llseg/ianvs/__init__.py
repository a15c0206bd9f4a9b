"""The Ianvs/Sedna side of llseg: estimators, Sedna modules, metric wrappers and the compatibility layer.

This is the only package that imports sedna.
"""
