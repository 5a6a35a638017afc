"""qrelease: a GitOps release controller for hybrid quantum/classical applications."""

__version__ = "0.1.0"
