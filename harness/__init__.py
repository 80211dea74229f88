"""gridlab's harness: grid files, experiments, and the ``gridlab`` command line.

The top layer. It talks to the queue (``jobs``) and the database (``db``) through their
APIs and never writes SQL itself.
"""
