"""Continual-learning recipes (joint, finetune, cil, ...) and their losses."""
