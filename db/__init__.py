"""gridlab's results database: models, engines, sessions, schema versions.

The bottom layer. Nothing here imports torch, the queue or the harness.
"""
