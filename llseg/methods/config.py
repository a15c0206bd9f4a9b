"""Hyperparameters of a continual segmentation run, validated from YAML-style key/value pairs."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from llseg.errors import ConfigError
from llseg.methods.optim import LR_POLICIES, OPTIMIZERS

RECIPES = ("joint", "finetune", "cil", "ssul", "mib", "plop", "idec", "lag")
LOSS_TYPES = ("ce", "bce")
# Flags that only some recipes read (methods.md §2-§6); they change nothing in the other
# recipes, so setting them there (to a non-default value) is an error.
SSUL_ONLY = ("unknown", "saliency_dir", "pseudo", "freeze", "bn_freeze", "w_transfer", "mem_size")
# IDEC and LAG are SSUL forks (methods.md §3, §4): SSUL's flags plus their feature distillation.
FEATURE_KD_FLAGS = ("KD_loss_type", "use_KD_layer_weight", "lamb", "lambda_kd", "kd_on_frozen", "bce_on_body")
IDEC_FLAGS = ("contrastive_learning", "lambda_arcl")
LAG_FLAGS = ("feature_decoupling", "rho", "uncertainty_pseudo", "uncertainty_margin", "lambda_dcl", "lambda_spm",
             "lambda_sfp", "lambda_nsc")
RECIPE_FLAGS: dict[str, tuple[str, ...]] = {
    "ssul": SSUL_ONLY,
    "mib": ("loss_kd", "alpha", "init_balanced"),
    "plop": ("pod_factor", "pod_logits_factor", "threshold", "classif_adaptive_factor", "init_balanced"),
    "idec": SSUL_ONLY + FEATURE_KD_FLAGS + IDEC_FLAGS,
    "lag": SSUL_ONLY + FEATURE_KD_FLAGS + LAG_FLAGS,
}
KD_LOSS_TYPES = ("KD_loss", "KLDiv_loss", "L1_loss", "L2_loss")  # llseg.methods.idec.KD_LOSS_TYPES
# Recipes whose losses are softmax-based (loss_type must stay ce).
SOFTMAX_ONLY = ("mib", "plop")
# Keys whose default is None: the type their values convert to.
OPTIONAL_TYPES: dict[str, type] = {"backbone_lr": float, "lr_incremental": float, "split": str,
                                   "saliency_dir": str, "amp": bool, "grad_clip": float}


def parse_size(value: Any, key: str) -> Optional[tuple[int, int]]:
    """``"128x256"``, ``[128, 256]`` or ``None`` -> (H, W)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.lower().split("x")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ConfigError(f"hyperparameter {key}: expected HxW like '128x256' or [128, 256], got {value!r}")
    try:
        h, w = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter {key}: expected HxW like '128x256' or [128, 256], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"hyperparameter {key}: sizes must be positive, got {value!r}")
    return h, w


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes training and prediction. Defaults follow Klingner et al. (methods.md §1.4)
    except ``epochs``, which is small so CPU runs take minutes; paper value: 200.

    Attributes:
        recipe: ``joint`` (all classes at once, full labels, retrained on every round's data so far),
            ``finetune`` (new labels only, no distillation), ``cil`` (Klingner's distillation),
            ``ssul`` (Cha et al.: per-step heads, frozen old model, pseudo-labels), ``mib``
            (Cermelli et al.: unbiased CE and KD), ``plop`` (Douillard et al.: local POD, entropy
            pseudo-labels), ``idec`` (Zhao et al.: SSUL + dense feature distillation DADA and
            ARCL) or ``lag`` (Yuan et al.: SSUL + feature distillation and semantic-invariance
            terms); the last five need DeepLabV3 and a dataset with a background class.
        split: split preset (``llseg.data.splits``, e.g. ``voc-15-1``) whose steps are the class
            groups: a stage that shows any class of a step adds the whole step as one group, so a
            first round that sees only some step-0 classes still builds step 0's head. Without it,
            a group is the set of new classes a stage's labels show.
        model: registry name of the architecture; ``model_kwargs`` go to its builder.
        input_size: (H, W) images are resized to before augmentation and for prediction (the paper
            uses 512×1024 for Cityscapes); ``None`` keeps each image's size.
        crop_size: (H, W) random training crop (paper 192×640); ``None`` trains on whole images.
        scale: range of the random down-rescale factor s (image shrinks by 1/s).
        temperature, lambda_gs: distillation temperature T and entropy weight λ_GS (cil only).
        init_from_teacher: cil only; start the student from the teacher instead of a fresh model
            (the paper re-initialises the student every stage).
        precision: ``auto`` (fp16 autocast on CUDA, bf16 autocast on CPUs with native bf16, else
            fp32), ``fp32``, ``bf16`` or ``fp16``. ``amp`` (the SSUL flag) overrides it:
            ``false`` = fp32, ``true`` = mixed precision (``precision`` must not be fp32).
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        num_workers: DataLoader worker processes; ``auto`` (default): none on CPU, where they
            would take cores from the step, and min(4, cores - 1) with CUDA
            (``llseg.runtime.resolve_num_workers``). Samples are the same with any number.
        seed: seeds initialisation, data order and augmentation (drawn per sample, not per
            worker), so a run repeats exactly on the same machine.
        optimizer: ``adam`` (Klingner) or ``sgd`` (Nesterov 0.9; SSUL/MiB/PLOP).
        lr_policy: ``poly`` | ``warm_poly`` | ``step`` per iteration (see ``llseg.methods.optim``);
            ``step_size`` iterations per decay for ``step``.
        backbone_lr: learning rate of ``model.backbone`` (SSUL: 0.001 with lr 0.01); None = lr.
        lr_incremental: learning rate instead of ``lr`` in steps ≥ 1 (MiB/PLOP: 0.001 after 0.01 in
            step 0); None = lr. The step is the index of the learner's newest class group.
        data_ratio: LAG's data-limited protocol (methods.md §4.1): steps ≥ 1 train on
            round(δ · N_t) of the step's N_t distinct training images (at least 1), a random
            subset fixed by ``seed`` and the stage number; step 0 uses every image. Any recipe.
        loss_type: ``ce`` (softmax cross-entropy) or ``bce`` (SSUL's per-class sigmoid BCE; also
            switches prediction and pseudo-labelling to sigmoid).
        grad_clip: maximum global L2 norm of the gradients of the trainable parameters, clipped
            every iteration (``torch.nn.utils.clip_grad_norm_``, after fp16 unscaling); None = off
            (the default; no published recipe clips). Must be > 0 when set. Any recipe. The
            synthetic ``lag`` example files use 0.1: with ``kd_on_frozen`` false, the body of a
            from-scratch model trained with frozen BatchNorm went to NaN in step 1 without it.

    SSUL, IDEC and LAG (methods.md §2):
        unknown: an unknown channel; background pixels are labelled unknown (all of them, or the
            salient ones when ``saliency_dir`` holds ``<image stem>.png`` maps); merged into the
            background at inference.
        pseudo, pseudo_thresh: pseudo-label background with the old model's confident foreground.
        freeze: steps ≥ 1 train only the new head (and the unknown head, and the background head
            at lr · 1e-4). bn_freeze: steps ≥ 1 keep every BatchNorm in eval mode, affine frozen.
        w_transfer: initialise each new head from the unknown head (needs ``unknown``).
        mem_size: class-balanced exemplar memory of earlier steps' images; half of every batch.

    MiB only (methods.md §5; defaults are ``--method MiB``'s):
        loss_kd: weight of the unbiased distillation (10). alpha: teacher logit scale (1).

    PLOP only (methods.md §6; defaults are ``--method PLOP``'s; PLOP always pseudo-labels):
        pod_factor, pod_logits_factor: local POD weights λ of the backbone stages and ASPP (0.01)
            and of the low-resolution logits (0.0005); 0 turns a term off.
        threshold: floor of the per-class median entropy thresholds (0.001).
        classif_adaptive_factor: weight each image's cross-entropy by ν, its share of background
            pixels that received a pseudo-label.

    MiB and PLOP:
        init_balanced: new classes start from the background classifier, biases β_b − log(|C_t|+1).

    IDEC and LAG (methods.md §3, §4; ``llseg.methods.idec``): the model gets the ASPPs on layer1..3
    (``aspp_taps``); in steps with a teacher the loss is SSUL's BCE plus an auxiliary feature loss.
    Defaults are those of the published commands where they exist:
        KD_loss_type: feature distance D of the distillation, ``KD_loss`` (MiB-style, softmax over
            channels, teacher sharpened ×2), ``KLDiv_loss``, ``L1_loss`` or ``L2_loss``.
        use_KD_layer_weight: DADA = λ^(e/E)·(0.5 D_l1 + 1.0 D_l2 + 2.0 D_l3) + D_out; else the
            unweighted sum of the four. lamb: λ (1.0 = no decay; LAG's code default 0.9); e is the
            1-based epoch and E = ``epochs``.
        lambda_kd: weight of DADA (1).
        kd_on_frozen: ``false`` (llseg's default, the papers' method): with ``freeze`` the body
            (backbone, ASPP and the tap ASPPs) also trains in steps ≥ 1, at ``backbone_lr`` or, when
            that is unset, at lr · 0.1 (BatchNorm stays frozen with ``bn_freeze``), so the feature
            terms regularise it; the heads train as in SSUL. ``true``: SSUL's freezing exactly, as the
            released code runs: the terms are computed and logged but have zero gradient
            (methods.md §3.3, §11). Needs ``freeze``.
        bce_on_body: with ``kd_on_frozen`` false, whether the BCE's gradient also reaches the body.
            ``false`` (default): the heads learn from the BCE on detached features and the body moves
            by the feature terms only, so a new step's labels (old classes appear as background
            where the pseudo-labels are unsure) cannot erase old-class features; on the synthetic
            objects (benchmarks/accuracy.py's pretrained setup, step 1 of voc-15-1), BCE on the body
            took old-class mIoU from 0.35 to 0.06 in that one step even with every feature term
            off, against 0.33 with the body frozen. ``true``: every loss trains everything.
    IDEC only:
        contrastive_learning: add ARCL (region triplet loss on the ASPP output; off in the released
            commands). lambda_arcl: its weight (1).
    LAG only (terms reconstructed, methods.md §4.2; ``llseg.methods.lag``):
        feature_decoupling: add the decoupled contrastive loss (DCL) on the ASPP output.
        rho: share of the ASPP channels, the most stable ones, treated as semantic-invariant (SPM
            acts on them); the others are sample-specific (SFP). ρ = 1 (the code's default) leaves
            no sample-specific channel, so SFP vanishes; the default here is 0.5 (llseg's choice).
        uncertainty_pseudo: pseudo-labels also need the old model's top-2 margin p(1) − p(2) >=
            ``uncertainty_margin`` (0.2, llseg's choice; the released rule is a bug, §4.2 item 5).
        lambda_dcl, lambda_spm, lambda_sfp, lambda_nsc: term weights ([unverified]; 0 turns a term
            off): 1, except λ_nsc 0.1. NSC projects the 256-channel feature difference on unit
            prototype directions, so it is up to ~C times a per-channel MSE; at λ_nsc = 1 the
            synthetic behaviour test (tests/methods/test_ssul_behaviour.py, body lr 0.005) diverged
            to NaN, at 0.3 and 0.1 it trained stably.
    """

    recipe: str = "cil"
    model: str = "erfnet"
    dataset: str = "cityscapes"
    epochs: int = 10
    batch_size: int = 6
    lr: float = 5e-4
    weight_decay: float = 3e-4
    lr_power: float = 0.9
    input_size: Optional[tuple[int, int]] = None
    crop_size: Optional[tuple[int, int]] = None
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = True
    jitter: float = 0.2
    temperature: float = 1.0
    lambda_gs: float = 1.0
    init_from_teacher: bool = False
    seed: int = 1234
    device: str = "auto"
    precision: str = "auto"
    num_workers: int | str = "auto"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    split: Optional[str] = None
    optimizer: str = "adam"
    lr_policy: str = "poly"
    step_size: int = 10000
    backbone_lr: Optional[float] = None
    loss_type: str = "ce"
    amp: Optional[bool] = None
    unknown: bool = False
    saliency_dir: Optional[str] = None
    pseudo: bool = False
    pseudo_thresh: float = 0.7
    freeze: bool = False
    bn_freeze: bool = False
    w_transfer: bool = False
    mem_size: int = 0
    lr_incremental: Optional[float] = None
    data_ratio: float = 1.0
    grad_clip: Optional[float] = None
    loss_kd: float = 10.0
    alpha: float = 1.0
    init_balanced: bool = True
    pod_factor: float = 0.01
    pod_logits_factor: float = 0.0005
    threshold: float = 0.001
    classif_adaptive_factor: bool = True
    KD_loss_type: str = "KD_loss"
    use_KD_layer_weight: bool = True
    lamb: float = 1.0
    lambda_kd: float = 1.0
    kd_on_frozen: bool = False
    bce_on_body: bool = False
    contrastive_learning: bool = False
    lambda_arcl: float = 1.0
    feature_decoupling: bool = True
    rho: float = 0.5
    uncertainty_pseudo: bool = False
    uncertainty_margin: float = 0.2
    lambda_dcl: float = 1.0
    lambda_spm: float = 1.0
    lambda_sfp: float = 1.0
    lambda_nsc: float = 0.1

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict[str, Any], *, source: str = "hyperparameters") -> "TrainConfig":
        """Build from Ianvs-style kwargs; unknown keys and bad values raise ``ConfigError`` naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in hyperparameters.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(names)}"
                raise ConfigError(f"{source}: unknown hyperparameter {key!r}{hint}")
            values[key] = cls._convert(key, value, names[key].default)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def __post_init__(self) -> None:
        """Raise ``ConfigError`` for values or combinations that cannot work."""
        choices = (("recipe", RECIPES), ("loss_type", LOSS_TYPES), ("optimizer", OPTIMIZERS), ("lr_policy", LR_POLICIES))
        for key, valid in choices:
            if getattr(self, key) not in valid:
                raise ConfigError(f"{key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.step_size < 1:
            raise ConfigError("epochs, batch_size and step_size must be >= 1")
        if self.num_workers != "auto" and (isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int)
                                           or self.num_workers < 0):
            raise ConfigError(f"num_workers must be 'auto' or an integer >= 0, got {self.num_workers!r}")
        if self.mem_size < 0 or not 0.0 <= self.pseudo_thresh <= 1.0:
            raise ConfigError("need mem_size >= 0 and 0 <= pseudo_thresh <= 1")
        if not 0.0 < self.data_ratio <= 1.0:
            raise ConfigError(f"data_ratio must be in (0, 1], got {self.data_ratio}")
        if self.lr_incremental is not None and self.lr_incremental <= 0:
            raise ConfigError(f"lr_incremental must be > 0, got {self.lr_incremental}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip (a gradient norm) must be > 0, got {self.grad_clip}")
        if min(self.loss_kd, self.pod_factor, self.pod_logits_factor) < 0 or self.alpha <= 0:
            raise ConfigError("need loss_kd, pod_factor, pod_logits_factor >= 0 and alpha > 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold (a normalised entropy) must be in [0, 1], got {self.threshold}")
        self._check_recipe_flags()
        if self.recipe in SOFTMAX_ONLY and self.loss_type != "ce":
            raise ConfigError(f"recipe {self.recipe} uses softmax losses; loss_type must be ce, got {self.loss_type!r}")
        if self.w_transfer and not self.unknown:
            raise ConfigError("w_transfer copies the unknown head; set unknown: true")
        if self.saliency_dir and not self.unknown:
            raise ConfigError("saliency_dir labels the unknown class; set unknown: true")
        if self.amp and self.precision == "fp32":
            raise ConfigError("amp: true contradicts precision: fp32; drop one of them")
        if self.mem_size and self.batch_size < 2:
            raise ConfigError("mem_size fills half of every batch; use batch_size >= 2")
        self._check_feature_kd()

    def _check_feature_kd(self) -> None:
        """IDEC/LAG values and the flags that only act together with another one."""
        if self.KD_loss_type not in KD_LOSS_TYPES:
            raise ConfigError(f"KD_loss_type must be one of {', '.join(KD_LOSS_TYPES)}, got {self.KD_loss_type!r}")
        weights = ("lamb", "lambda_kd", "lambda_arcl", "lambda_dcl", "lambda_spm", "lambda_sfp", "lambda_nsc")
        negative = [k for k in weights if getattr(self, k) < 0]
        if negative:
            raise ConfigError(f"{', '.join(negative)} must be >= 0")
        if not 0.0 <= self.rho <= 1.0:
            raise ConfigError(f"rho (a share of channels) must be in [0, 1], got {self.rho}")
        if not 0.0 <= self.uncertainty_margin <= 1.0:
            raise ConfigError(f"uncertainty_margin (a probability margin) must be in [0, 1], got {self.uncertainty_margin}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        needs = (("kd_on_frozen", "freeze", "kd_on_frozen: true keeps the frozen body of freeze; without freeze the body trains anyway"),
                 ("lamb", "use_KD_layer_weight", "lamb decays the layer weights of use_KD_layer_weight"),
                 ("lambda_arcl", "contrastive_learning", "lambda_arcl weights ARCL"),
                 ("lambda_dcl", "feature_decoupling", "lambda_dcl weights the DCL of feature_decoupling"),
                 ("uncertainty_pseudo", "pseudo", "uncertainty_pseudo refines the pseudo-labels"),
                 ("uncertainty_margin", "uncertainty_pseudo", "uncertainty_margin is the threshold of uncertainty_pseudo"))
        if self.bce_on_body and self.kd_on_frozen:
            raise ConfigError("bce_on_body: true needs a trainable body; it does nothing with kd_on_frozen: true")
        for flag, required, why in needs:
            if getattr(self, flag) != defaults[flag] and not getattr(self, required):
                raise ConfigError(f"{why}; set {required}: true (or drop {flag})")

    def _check_recipe_flags(self) -> None:
        """Flags of other recipes must keep their defaults; the error names them and their recipes."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        owners: dict[str, list[str]] = {}
        for recipe, flags in RECIPE_FLAGS.items():
            for flag in flags:
                owners.setdefault(flag, []).append(recipe)
        misplaced: dict[tuple[str, ...], list[str]] = {}
        for flag, recipes in owners.items():
            if self.recipe not in recipes and getattr(self, flag) != defaults[flag]:
                misplaced.setdefault(tuple(recipes), []).append(flag)
        if misplaced:
            recipes, flags = next(iter(misplaced.items()))
            plural = "s" if len(recipes) > 1 else ""
            raise ConfigError(f"{', '.join(flags)} apply to recipe{plural} {', '.join(recipes)} only, not {self.recipe!r}")

    @property
    def effective_precision(self) -> str:
        """``precision`` after the ``amp`` flag: amp false -> fp32."""
        return "fp32" if self.amp is False else self.precision

    @staticmethod
    def _convert(key: str, value: Any, default: Any) -> Any:
        if key in OPTIONAL_TYPES:
            if value is None or value == "":
                return None
            default = OPTIONAL_TYPES[key]()
        if key in ("input_size", "crop_size"):
            return parse_size(value, key)
        if key == "scale":
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"hyperparameter scale: expected [low, high], got {value!r}") from None
            if not 0 < low <= high:
                raise ConfigError(f"hyperparameter scale: need 0 < low <= high, got {value!r}")
            return low, high
        if key == "num_workers":
            if value == "auto":
                return value
            default = 0
        if key == "model_kwargs":
            if not isinstance(value, dict):
                raise ConfigError(f"hyperparameter model_kwargs: expected a mapping, got {value!r}")
            return dict(value)
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise ConfigError(f"hyperparameter {key}: expected true/false, got {value!r}")
            return value
        if isinstance(default, (int, float)):
            try:
                number = type(default)(value)
            except (TypeError, ValueError):
                raise ConfigError(f"hyperparameter {key}: expected a number, got {value!r}") from None
            if isinstance(default, int) and number != float(value):
                raise ConfigError(f"hyperparameter {key}: expected an integer, got {value!r}")
            return number
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (tuples as lists) for checkpoints and reports."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
