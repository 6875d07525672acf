"""``python -m evoforge``: the same command line as the ``evoforge`` script."""

from evoforge.cli import main

main()
