"""Training-side pieces: adapters and which parameters train."""
