"""Alembic migrations for the results database (``gridlab db upgrade`` runs them)."""
