"""xscan: scores folders of chest X-rays for pneumonia, offline, on a CPU.

xscan aids a physician; it is not a diagnostic device.
"""

__version__ = "0.1.0"
