"""Thesis companion: multimodal movie-genre classification on MM-IMDb (poster + plot, 23 genres).

Importing the package sets the offline/cache environment (see `thesis_lib.offline`) before any
Hugging Face, timm or ultralytics import can read it. The core imports nothing heavy at import time.
"""

from thesis_lib.offline import configure_environment as _configure_environment

_configure_environment()

__version__ = "0.1.0"
