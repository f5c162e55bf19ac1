"""Persistence: SQLAlchemy models, the unit of work, and set-based tree queries."""
