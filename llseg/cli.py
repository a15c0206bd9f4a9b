"""The ``llseg`` command line: ``llseg <command> --help`` for each command."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, as shells report them


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so that the same cleanup runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def setup_logging(level: int = logging.INFO) -> None:
    """Log llseg messages to stderr once (idempotent); LLSEG_LOGLEVEL overrides ``level``. Ranks
    other than 0 of a torchrun job log warnings only."""
    env = os.environ.get("LLSEG_LOGLEVEL")
    if env:
        level = getattr(logging, env.upper(), level)
    if int(os.environ.get("RANK", "0")) > 0:
        level = max(level, logging.WARNING)
    log = logging.getLogger("llseg")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW, e.g. 128x256; got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small; both sides must be >= 16")
    from llseg.data.checks import MAX_SIDE

    if h > MAX_SIDE or w > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size {text!r} is too large; both sides must be <= {MAX_SIDE}")
    return h, w


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {text!r}")
    return value


def _cmd_synth(args: argparse.Namespace) -> int:
    from llseg.atomic import check_output_dir

    check_output_dir(args.out, "--out")
    if args.kind == "ade20k":
        from llseg.data.ade20k.synthetic import generate_ade_tree
        from llseg.errors import ConfigError

        if args.images_per_city is not None or args.class_tint:
            raise ConfigError("--images-per-city and --class-tint do not apply to --kind ade20k; drop them")
        print(generate_ade_tree(args.out, seed=args.seed, size=args.size))
        return 0
    if args.kind == "aerial":
        from llseg.data.isprs.synthetic import generate_aerial_dataset
        from llseg.errors import ConfigError

        if args.images_per_city is not None or args.class_tint:
            raise ConfigError("--images-per-city and --class-tint do not apply to --kind aerial; drop them")
        print(generate_aerial_dataset(args.out, seed=args.seed, size=args.size))
        return 0
    if args.kind == "objects":
        from llseg.data.voc.synthetic import generate_objects_dataset
        from llseg.errors import ConfigError

        if args.images_per_city is not None:
            raise ConfigError("--images-per-city applies to --kind city only; drop it for --kind objects")
        print(generate_objects_dataset(args.out, seed=args.seed, size=args.size, class_tint=args.class_tint))
        return 0
    from llseg.data.cityscapes.synthetic import generate_city_dataset

    if args.class_tint:
        from llseg.errors import ConfigError

        raise ConfigError("--class-tint applies to --kind objects only; drop it for --kind city")
    summary = generate_city_dataset(
        args.out, seed=args.seed, size=args.size, images_per_city=args.images_per_city
    )
    print(summary)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from llseg.atomic import check_output_dir
    from llseg.data.prepare import prepare
    from llseg.errors import ConfigError

    if args.list_splits:
        from llseg.data.splits import describe_presets

        print(describe_presets())
        return 0
    missing = [f"--{name}" for name in ("dataset", "root", "split", "out") if getattr(args, name) is None]
    if missing:
        raise ConfigError(f"llseg prepare: {', '.join(missing)} required (or --list-splits to list the split presets)")

    check_output_dir(args.out, "--out")
    isprs = {
        key: value
        for key, value in (("patch_size", args.patch_size), ("background", args.background), ("clutter", args.clutter),
                           ("eroded", args.eroded or None), ("colour_tolerance", args.colour_tolerance))
        if value is not None
    }
    manifest = prepare(
        args.dataset, root=args.root, split=args.split, out=args.out, seed=args.seed,
        train_list=args.train_list, test_list=args.test_list, isprs_options=isprs, all_train=args.all_train,
    )
    print(manifest.summary())
    return 0


def _assignment(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. epochs=20; got {text!r}")
    import yaml

    return key.strip(), yaml.safe_load(value)


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from llseg.atomic import check_output_dir
    from llseg.errors import ConfigError
    from llseg.methods.stages import train_config, train_stages
    from llseg.metrics.incremental import format_table

    settings = dict(args.set)
    for key in ("recipe", "model"):
        if key in settings:
            raise ConfigError(f"llseg train: set {key} with --{key}, not --set {key}=...")
    hyperparameters = {"recipe": args.recipe, "model": args.model, **settings}
    if args.print_config:
        print(yaml.safe_dump(train_config(args.prepared, hyperparameters).to_dict(), sort_keys=False), end="")
        return 0
    if args.out is None:
        raise ConfigError("llseg train: --out is required (or --print-config)")
    check_output_dir(args.out, "--out")
    from llseg import distributed

    try:
        results = train_stages(args.prepared, args.out, hyperparameters, resume=args.resume)
    finally:
        distributed.shutdown()
    if distributed.env_world_size() <= 1 or int(os.environ.get("RANK", "0")) == 0:
        print(format_table(results))
        print(f"checkpoints and results in {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from llseg.methods.stages import evaluate_checkpoint
    from llseg.metrics.incremental import format_table

    table = evaluate_checkpoint(args.checkpoint, args.index, csv_path=args.csv, device=args.device)
    print(format_table({args.checkpoint.name: table}))
    return 0


def _cmd_export_backbone(args: argparse.Namespace) -> int:
    import functools

    import torch

    from llseg.atomic import atomic_save, check_output_file
    from llseg.methods.learner import ContinualLearner
    from llseg.models import DeepLabV3, ERFNet

    check_output_file(args.out, "--out")
    model = ContinualLearner.from_checkpoint(args.checkpoint, device="cpu").model
    if isinstance(model, DeepLabV3):
        state, option = model.backbone_checkpoint(), "backbone_weights"
    elif isinstance(model, ERFNet):
        state, option = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}, "encoder_weights"
    else:
        raise ValueError(f"{args.checkpoint} holds a {type(model).__name__}; export-backbone knows DeepLabV3 and ERFNet")
    atomic_save(args.out, functools.partial(torch.save, state))
    print(f"wrote {args.out}; start another training from it with the hyperparameter "
          f"model_kwargs: {{{option}: {args.out}}}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from llseg.methods.pretrain import PretrainSettings, pretrain_backbone

    options = {k: v for k, v in (("size", args.size), ("images", args.images), ("class_tint", args.class_tint),
                                 ("epochs", args.epochs)) if v is not None}
    if args.kind == "aerial" and {"images", "class_tint"} & options.keys():
        from llseg.errors import ConfigError

        raise ConfigError("--images and --class-tint apply to --kind objects only; drop them for --kind aerial")
    settings = PretrainSettings(kind=args.kind, seed=args.seed, **options)
    result = pretrain_backbone(settings, args.out, work=args.work)
    how = "reused (same settings)" if result.reused else f"trained in {result.seconds / 60:.1f} min"
    mIoU = result.scores.get("mIoU_all")
    print(f"{result.path}: {how}, {result.train_images} train images, its own test mIoU_all "
          f"{'-' if mIoU is None else f'{mIoU:.3f}'}; settings key {result.key}")
    print(f"start a training from it with the hyperparameter model_kwargs: {{backbone_weights: {result.path}}}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from llseg.methods.predict import predict_images

    written = predict_images(args.checkpoint, args.image, args.out, alpha=args.alpha, device=args.device)
    print(f"{len(written)} image(s): <stem>_mask.png and <stem>_overlay.png in {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from llseg.export import export_checkpoint

    print(export_checkpoint(args.checkpoint, args.out, args.format, args.size))
    return 0


def _cmd_sedna(args: argparse.Namespace) -> int:
    from llseg.sedna.workers import run_worker

    return run_worker(args.role)


def _cmd_report(args: argparse.Namespace) -> int:
    from llseg.report.build import write_workspace_report

    for path in write_workspace_report(args.workspace):
        print(path)
    return 0


def _cmd_make_jobs(args: argparse.Namespace) -> int:
    from llseg.jobgen import stale, write_jobs

    if args.check:
        differ = stale(args.root)
        for rel in differ:
            print(f"out of date: {rel}")
        print(f"{len(differ)} generated job file(s) out of date" + ("; run `llseg make-jobs`" if differ else ""))
        return 1 if differ else 0
    changed = write_jobs(args.root)
    print(f"{len(changed)} job file(s) written or removed under {args.root}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from llseg.runner.job import run_job

    if args.plan:
        from llseg.runner.plan import format_plan, plan_job

        print(format_plan(plan_job(str(args.file))))
        return 0
    if args.rank_only and (args.resume or args.case or args.jobs > 1):
        from llseg.errors import ConfigError

        raise ConfigError("--rank-only runs nothing; drop --resume, --case and --jobs")
    return 1 if run_job(str(args.file), resume=args.resume, cases=args.case, rank_only=args.rank_only,
                        jobs=args.jobs).failed else 0


def build_parser() -> argparse.ArgumentParser:
    from llseg.methods.registry import list_recipes

    parser = argparse.ArgumentParser(prog="llseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "synth",
        help="write a synthetic dataset: city scenes (Cityscapes layout), objects (VOC layout) or aerial tiles (ISPRS layout)",
    )
    p.add_argument("--kind", choices=["city", "objects", "aerial", "ade20k"], default="city",
                   help="city: street scenes in Cityscapes layout (default); objects: VOC classes in VOC 2012 layout; "
                        "aerial: Potsdam RGB and Vaihingen IRRG tiles in the ISPRS layout; ade20k: a small "
                        "ADEChallengeData2016 tree (150 classes as coloured rectangles)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=None, help="image size HxW (default: the generator's)")
    p.add_argument("--images-per-city", type=int, default=None, help="train images per city (default: the generator's)")
    p.add_argument("--class-tint", type=float, default=0.0,
                   help="objects only: 0..1, share of each object's colour from its class hue (default 0: shape and "
                        "texture only; ~0.5 makes classes learnable from scratch within CPU minutes)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="build an incremental split: label maps, Ianvs index files, manifest")
    p.add_argument("--list-splits", action="store_true",
                   help="print every split preset with its dataset, steps and classes per step, and exit")
    p.add_argument("--dataset", choices=["cityscapes", "voc", "isprs", "ade20k"], help="dataset format of --root")
    p.add_argument("--root", type=Path,
                   help="dataset root: the folder holding leftImg8bit/ and gtFine/ (cityscapes), JPEGImages/ (voc), "
                        "potsdam/ and vaihingen/ (isprs) or images/ and annotations/ (ade20k: ADEChallengeData2016)")
    p.add_argument("--split",
                   help="split preset of the dataset (e.g. cil-3 for cityscapes, voc-15-1 for voc, isprs-2-2-1 for isprs, "
                        "ade-100-50 for ade20k); --list-splits lists them all")
    p.add_argument("--out", type=Path, help="output folder for labels, index files, manifest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-train", action="store_true",
                   help="the papers' protocol: every step trains on all its images (voc, isprs, ade20k, cityscapes-domain); "
                        "Ianvs' per-round eval parts then repeat trained images and no validation images remain")
    p.add_argument("--train-list", default=None,
                   help="voc only: list in ImageSets/Segmentation/ to draw the tasks from (default train; SBD: train_aug)")
    p.add_argument("--test-list", default=None, help="voc only: list for test_index.txt (default val)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="isprs only: square patch side in px (default 512; the last row and column overlap)")
    p.add_argument("--background", choices=["impervious", "none"], default=None,
                   help="isprs only: impervious surfaces as the background class (default, as the class-incremental "
                        "ISPRS papers; estimator dataset isprs) or no background (dataset isprs-nobg)")
    p.add_argument("--clutter", choices=["background", "ignore"], default=None,
                   help="isprs only: clutter in training labels: folded into the background (default with "
                        "--background impervious) or ignored; always ignored at test")
    p.add_argument("--eroded", action="store_true",
                   help="isprs only: read the eroded-boundary labels (*_noBoundary); their boundaries are ignored")
    p.add_argument("--colour-tolerance", type=int, default=None,
                   help="isprs only: accept label colours within this distance (per channel, 0..127) of the table")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train the stages of a prepared split; one checkpoint per stage")
    p.add_argument("--prepared", type=Path, required=True, help="output folder of 'llseg prepare'")
    p.add_argument("--recipe", required=True, help=f"registered recipe: {', '.join(list_recipes())}")
    p.add_argument("--model", default="erfnet", help="model registry name")
    p.add_argument("--out", type=Path, default=None, help="folder for stage<k>.pt and results")
    p.add_argument("--set", type=_assignment, action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter, e.g. --set epochs=20 --set crop_size=64x128 (repeatable)")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved hyperparameters (YAML) and exit without training")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same arguments): finished stages are kept, the "
                        "interrupted stage continues after its last saved epoch (identical results)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on an index file: mIoU per task and on their unions, old/new/all mIoU")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True, help="index file; the 2nd token of each line is the label")
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV here")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export-backbone", help="save a checkpoint's backbone (DeepLabV3) or encoder (ERFNet) as the "
                       "pretrained weights of another training")
    p.add_argument("--checkpoint", type=Path, required=True, help="a stage<k>.pt of 'llseg train' or a saved estimator")
    p.add_argument("--out", type=Path, required=True, help="output .pth (torchvision format for DeepLabV3)")
    p.set_defaults(func=_cmd_export_backbone)

    p = sub.add_parser("pretrain", help="train a DeepLabV3 backbone on a synthetic dataset (another seed) as the pretrained "
                       "weights of the synthetic VOC / ISPRS jobs; cached: the same settings reuse the file")
    p.add_argument("--kind", choices=["objects", "aerial"], required=True,
                   help="objects: every class of the synthetic objects (VOC layout); aerial: the Potsdam tiles of the "
                        "synthetic aerial data (ISPRS layout)")
    p.add_argument("--out", type=Path, required=True, help="output .pth (torchvision format; a record <out>.json beside it)")
    p.add_argument("--seed", type=int, default=1, help="generator seed of the pretraining data (default 1; the jobs' data: 0)")
    p.add_argument("--size", type=_size, default=None,
                   help="objects: image size HxW; aerial: square patch size NxN (default: the synthetic jobs' sizes, "
                        "128x128 for objects, 96x96 for aerial)")
    p.add_argument("--images", type=int, default=None, help="objects only: train images to generate (default 400)")
    p.add_argument("--class-tint", type=float, default=None, help="objects only: class colour cue 0..1 (default 0.7)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 30 for objects, 20 for aerial)")
    p.add_argument("--work", type=Path, default=Path("data/pretrain"),
                   help="folder for the generated and prepared pretraining data (default data/pretrain)")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("predict", help="colourised mask and overlay of a checkpoint's prediction, per image")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True, help="an image file, or a folder: every image directly in it")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: ./predictions)")
    p.add_argument("--alpha", type=float, default=0.5, help="mask weight in the overlay, 0..1 (default 0.5)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: CUDA when present)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="write a checkpoint as an edge model: ONNX or TorchScript (docs/sedna.md)")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", type=Path, required=True, help="output file (.onnx or .ts)")
    p.add_argument("--size", type=_size, default=None, help="deploy resolution HxW (default: the checkpoint's input_size)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("sedna", help="KubeEdge Sedna lifelong-learning worker; settings from the environment (docs/sedna.md)")
    p.add_argument("role", choices=("train", "eval", "infer"))
    p.set_defaults(func=_cmd_sedna)

    p = sub.add_parser(
        "bench",
        help="run an Ianvs benchmarkingjob.yaml without Ianvs (lifelong no-inference mode); exit 1 if a test case failed",
    )
    p.add_argument("-f", "--file", type=Path, required=True, help="benchmarkingjob YAML; its paths are relative to the CWD")
    p.add_argument("--plan", action="store_true", help="print per test case and round the images x epochs, FLOPs and the "
                   "estimated time on this machine (a short calibration), then exit without training")
    p.add_argument("--resume", action="store_true",
                   help="reuse the job's workspace: keep finished test cases and rounds, continue an interrupted round "
                        "after its last saved epoch (identical numbers); refused when the data or settings changed")
    p.add_argument("--case", action="append", default=[], metavar="NAME",
                   help="run only the test cases of algorithm NAME (repeatable); other processes or machines may run "
                        "other cases against the same workspace (one lock per case)")
    p.add_argument("--rank-only", action="store_true",
                   help="run nothing: build rank/*.csv and the report from the finished test cases in the workspace")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="run the algorithms in N worker processes at once (longest first, each with 1/N of the threads, "
                        "logs in <workspace>/<job>/logs/); default 1. fp32 numbers depend on the thread count: compare "
                        "runs with the same N")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("make-jobs", help="write examples/*/lifelong_learning_bench/splits/<split>/: a ready Ianvs job for every "
                       "VOC, ISPRS and ADE20K split, derived from each dataset's hand-written job")
    p.add_argument("--root", type=Path, default=Path("."), help="repository root (default: the current folder)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a shipped file differs from what it would write")
    p.set_defaults(func=_cmd_make_jobs)

    p = sub.add_parser("report", help="(re)build report.html and report.md of a benchmark from its workspace files")
    p.add_argument("workspace", type=Path, help="<workspace>/<job name> folder written by 'llseg bench' or 'ianvs'")
    p.set_defaults(func=_cmd_report)
    return parser


def _attach_dashed_values(argv: list[str]) -> list[str]:
    """``--size -32x64`` -> ``--size=-32x64``: argparse takes a value that starts with a dash and a
    digit (but is no plain number) for an option and reports "expected one argument"; attached,
    the value reaches its own check and message."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and len(arg) > 1 and arg[0] == "-" and arg[1].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _resume_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """How to continue an interrupted command (one line)."""
    if args.command in ("train", "bench") and not getattr(args, "print_config", False):
        again = argv if "--resume" in argv else [*argv, "--resume"]
        kept = "finished stages and the last saved epoch" if args.command == "train" else "finished test cases and rounds"
        return f"{kept} are kept; continue with: {shlex.join(['llseg', *again])}"
    return "nothing was kept; rerun the command"


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_attach_dashed_values(argv))
    func: Callable[[argparse.Namespace], int] = args.func
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return func(args)
    except (KeyboardInterrupt, Terminated) as exc:
        name, code = ("SIGTERM", EXIT_SIGTERM) if isinstance(exc, Terminated) else ("SIGINT", EXIT_SIGINT)
        print(f"\nllseg {args.command}: stopped by {name}; {_resume_hint(args, argv)}", file=sys.stderr)
        return code
    except MemoryError:
        print(f"llseg {args.command}: error: out of memory; use smaller sizes or batches", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # Data and configuration errors carry a message that names the file and the fix; OSError
        # (e.g. a disk that filled up) names the path.
        print(f"llseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
