"""brev: one place where a team gets GPUs."""

__version__ = "0.1.0"
