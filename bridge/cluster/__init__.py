"""Several replicas on one PostgreSQL database: leader lease, change feed, job claims."""
