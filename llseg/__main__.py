"""``python -m llseg`` runs the command-line interface."""
from llseg.cli import main

raise SystemExit(main())
