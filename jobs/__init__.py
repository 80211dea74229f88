"""gridlab's job queue: atomic claims, leases with heartbeats, retries, cancellation.

Layers talk downward only: ``jobs`` uses ``db``; it never imports the harness, torch
or Slurm. Every SQL statement the queue runs lives in :mod:`jobs.queries`.
"""
