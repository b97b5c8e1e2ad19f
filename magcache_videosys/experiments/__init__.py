"""Building blocks of ``experiments/opensora.py``: the VBench generation run.

Everything here except :mod:`.generation` works without VideoSys, so prompt handling, naming,
sharding, resume, the manifest and the summary are tested on machines that cannot run a model.
"""
