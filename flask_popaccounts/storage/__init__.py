"""Storage: the SQL tables, the built-in message store, secrets at rest, migrations.

Imports only the engine (a test walks every import).
"""
