"""qrelease's performance benchmarks: every goal measured as a ratio against the raw tool.

Run with `make bench` (or `python -m benchmarks --help`); see benchmarks/README.md.
"""
