"""`python -m qrelease` runs the command line."""

from qrelease.cli import main

main()
