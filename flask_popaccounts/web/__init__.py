"""The web layer: the Mail Accounts blueprint, its forms, templates and static files.

Calls services (and reads their storage types); never ``jobs``.
"""
