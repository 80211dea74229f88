"""gridlab db layer."""
