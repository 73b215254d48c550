"""The operator dashboard (server-rendered; `views.install(app)` wires it into the hub)."""
