"""``python -m kernbuild.cli``: the console script, for a checkout without it on PATH."""

from kernbuild.cli import main

main()
