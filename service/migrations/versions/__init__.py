"""Alembic revisions, oldest first: 0001 the issue-2 tables, 0002 checkpoints."""
