"""workhub: a work-allocation hub with an exact daily ledger in PostgreSQL."""

__version__ = "0.1.0"
