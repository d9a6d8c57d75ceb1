"""The routers of the serving API, one module per group: scores, model, health, admin."""
