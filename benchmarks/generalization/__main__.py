"""``python -m benchmarks.generalization``."""

from benchmarks.generalization.cli import main

main()
