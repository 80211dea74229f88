"""gridlab jobs layer."""
