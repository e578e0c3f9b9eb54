"""Alembic migrations of the alert store; `service.store.migrate` runs them."""
