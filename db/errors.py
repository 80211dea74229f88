"""Errors a user can act on.

Every error a user can cause (a bad grid file, a database that cannot be reached, a
schema that is behind) is a :class:`GridlabError`: the command line prints it as one
line (what went wrong, and how to fix it) and exits with code 2. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class GridlabError(Exception):
    """A problem the user can fix. ``str()`` is one line: what, then how to fix it."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(what if not fix else f"{what}; {fix}")


class DatabaseUnavailable(GridlabError):
    """The database URL is malformed, or the server cannot be reached."""


class NoDatabase(DatabaseUnavailable):
    """The URL names a SQLite file that does not exist, and nothing may create it."""


class SchemaMismatch(GridlabError):
    """The database's schema is not the one this gridlab needs."""


class NotGridlabDatabase(GridlabError):
    """The database holds tables gridlab did not create."""
