"""avatarrender: render 2D avatar segments ahead of air time into HLS, and play them out live."""
__version__ = "0.1.0"
__all__ = ["__version__"]
