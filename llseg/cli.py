"""The ``llseg`` command line: ``llseg <command> --help`` for each command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from llseg.runtime import setup_logging


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW, e.g. 128x256; got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small; both sides must be >= 16")
    return h, w


def _cmd_synth(args: argparse.Namespace) -> int:
    from llseg.data.synthetic import generate_city_dataset

    summary = generate_city_dataset(
        args.out, seed=args.seed, size=args.size, images_per_city=args.images_per_city
    )
    print(summary)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from llseg.data.prepare import prepare

    manifest = prepare(args.dataset, root=args.root, split=args.split, out=args.out, seed=args.seed)
    print(manifest.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the synthetic city dataset in Cityscapes layout")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=None, help="image size HxW (default: the generator's)")
    p.add_argument("--images-per-city", type=int, default=None, help="train images per city (default: the generator's)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="build an incremental split: label maps, Ianvs index files, manifest")
    p.add_argument("--dataset", required=True, choices=["cityscapes"], help="dataset format of --root")
    p.add_argument("--root", type=Path, required=True, help="dataset root (Cityscapes layout)")
    p.add_argument("--split", required=True, help="split preset or spec, e.g. cil-3")
    p.add_argument("--out", type=Path, required=True, help="output folder for labels, index files, manifest")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        # Data and configuration errors carry a message that names the file and the fix.
        print(f"llseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
