"""The published settings of the SSUL family, written out independently of llseg's Options defaults
(docs/methods.md §2, §3.1, §4.1): tests check that the defaults equal them and train with them."""

SSUL_VOC_FLAGS = {  # SSUL's published VOC command
    "loss_type": "bce", "unknown": True, "pseudo": True, "pseudo_thresh": 0.7, "freeze": True, "bn_freeze": True,
    "w_transfer": True,
}
IDEC_VOC_FLAGS = {  # IDEC's published VOC command
    "loss_type": "bce", "unknown": True, "pseudo": True, "pseudo_thresh": 0.6, "freeze": True, "bn_freeze": True,
    "w_transfer": True, "KD_loss_type": "KD_loss", "use_KD_layer_weight": True, "lamb": 1.0, "contrastive_learning": False,
}
LAG_VOC_FLAGS = {  # LAG's dev-run options, with llseg's rho
    "loss_type": "bce", "unknown": True, "pseudo": True, "pseudo_thresh": 0.7, "freeze": True, "bn_freeze": True,
    "w_transfer": True, "KD_loss_type": "KD_loss", "use_KD_layer_weight": True, "lamb": 1.0, "feature_decoupling": True,
    "rho": 0.5, "uncertainty_pseudo": False,
}
