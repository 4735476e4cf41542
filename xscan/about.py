"""What xscan is: its version, and the statement every output a person reads carries."""

__version__ = "0.1.0"

DISCLAIMER = "xscan aids a physician; it is not a diagnostic device."
