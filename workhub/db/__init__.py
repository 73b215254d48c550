"""Database access: the embedded server, migrations, the pool and the named queries."""
