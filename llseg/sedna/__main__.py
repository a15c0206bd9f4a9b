"""``python -m llseg.sedna train|eval|infer``: the same as ``llseg sedna ...``."""
import sys

from llseg.cli import main

raise SystemExit(main(["sedna", *sys.argv[1:]]))
