"""Services: the only place where the engine meets storage (see the README's architecture).

Each module is one seam; none imports ``web`` or ``jobs``, and none imports another in
a circle (tests/test_layers.py).
"""
