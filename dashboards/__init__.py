"""gridlab dashboards layer."""
