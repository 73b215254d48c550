"""HTTP routers: parse, call core, shape the reply."""
