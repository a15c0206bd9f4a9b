"""The recipes shipped with llseg, one module per method; every module here is imported by the
registry (:mod:`llseg.methods.registry`), so a new module registers its recipe by existing."""
