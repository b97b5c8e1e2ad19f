"""Magnitude-ratio tables shipped with the package, one JSON file each (see ``ratios.py``)."""
