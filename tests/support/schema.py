"""The newest revision of the extension's Alembic lineage, as the migration tests expect it.

One place to move when a revision is added: a test that finds another head fails, so
an added migration is always seen by these tests.
"""

HEAD = "0010_retrieval_settings"
