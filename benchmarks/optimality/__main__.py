"""``python -m benchmarks.optimality``: see ``benchmarks.optimality``."""

from benchmarks.optimality.cli import main

main()
