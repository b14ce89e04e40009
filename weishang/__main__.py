"""``python -m weishang``: the command line (same as the ``weishang`` command)."""

from weishang.model.apps.cli import main

main()
