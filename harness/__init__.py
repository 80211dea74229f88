"""gridlab harness layer."""
