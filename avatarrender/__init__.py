"""avatarrender: render 2D avatar segments ahead of air time into HLS, and play them out live."""
import logging as _logging

__version__ = "0.1.0"
__all__ = ["__version__"]

# PyAV hands libav's messages to the "libav" logger once a level is set; with no handler,
# Python's last-resort handler would print them under our one-line errors (which carry them).
_logging.getLogger("libav").addHandler(_logging.NullHandler())
