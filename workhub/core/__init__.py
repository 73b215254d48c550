"""Domain logic, one module per capability: plain async functions over a connection."""
