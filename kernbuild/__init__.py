"""kernbuild: KERN-style packaging and environment builds for radio-astronomy software."""

__version__ = "0.1.0"
