"""``python -m benchmarks.gahb``: see ``benchmarks.gahb``."""

from benchmarks.gahb.cli import main

main()
