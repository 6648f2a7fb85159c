"""Jobs: the in-process fetch scheduler and the ``flask popaccounts`` command line.

Call services; never ``web``.
"""
