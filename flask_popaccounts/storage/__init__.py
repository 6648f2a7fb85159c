"""Storage: the SQL tables, the built-in message store, secrets at rest, migrations.

Imports only the engine (a test walks every import).
"""

from . import faults as faults  # the fault table joins Base.metadata with the others
from .deliveries import records as records  # the delivery records' table, likewise
