"""janus-rt's version, in one place: the package, setup.py (which parses this file, never importing the package),
the kernels' tile-cache names, export manifests and quantized checkpoints all read it from here.

This module imports nothing, so reading it costs nothing and creates no import cycle.
"""

__version__ = "0.1.0"
