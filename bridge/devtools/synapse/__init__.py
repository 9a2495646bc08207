"""A throwaway, real Synapse homeserver on loopback.

Used by the pytest harness (``@pytest.mark.synapse`` tests), the benchmarks and
``make demo``. It needs the development extras (``matrix-synapse``,
``synapse-http-antispam``, and ``psycopg2`` for PostgreSQL); nothing in the production
code path imports it.

The server listens on 127.0.0.1 only, never federates outbound
(``federation_domain_whitelist: []``), trusts no key server and has rate limits raised
far enough that tests never hit them. Everything it writes (configuration, signing
key, SQLite database, media, log) lives in the working directory given to it.

Modules: ``process`` (:class:`LocalSynapse`, the process lifecycle), ``config``
(homeserver.yaml, :class:`AntispamModule`), ``users`` (API requests, user creation).
The PostgreSQL helpers live in :mod:`bridge.devtools.postgres` and are re-exported here
for existing importers.
"""

from bridge.devtools.postgres import (
    create_postgres_database,
    drop_postgres_database,
    temporary_postgres_database,
)
from bridge.devtools.synapse.config import ANTISPAM_CALLBACKS, AntispamModule
from bridge.devtools.synapse.process import LocalSynapse, SynapseStartError
from bridge.devtools.synapse.users import RegisteredUser, SynapseError

__all__ = [
    "ANTISPAM_CALLBACKS",
    "AntispamModule",
    "LocalSynapse",
    "RegisteredUser",
    "SynapseError",
    "SynapseStartError",
    "create_postgres_database",
    "drop_postgres_database",
    "temporary_postgres_database",
]
