"""The settings an experiment accepts: specs, their defaults and their identity.

An experiment declares ``PARAMS: dict[str, Param]`` (:class:`jobs.params.Param`, the one
mechanism gridlab checks settings with). A grid file's fixed settings and
axes are checked against them before anything is written: an unknown name lists the
valid ones, a wrong value says which values are allowed.

A cell's identity (its spec hash, which makes enqueueing idempotent) is its resolved spec.
A setting added to an experiment after grids were enqueued would change every cell's spec,
so re-enqueueing an unchanged grid file after an upgrade would queue every cell again. Such
a setting is declared ``neutral``: its default is the behaviour from before it existed, and
at that default it stays out of the stored spec and so out of the hash. A worker fills it in
(:func:`resolve`) before the experiment runs.
"""

from __future__ import annotations

from typing import Any

from db.errors import GridlabError
from jobs import states
from jobs.params import REQUIRED, Param


class InvalidSpec(GridlabError):
    """A cell's settings cannot run (an unknown experiment, a combination an experiment
    refuses, an arm that is not in the grid). ``invalid``: the job is never retried."""

    outcome = states.OUTCOME_INVALID


def defaults(params: dict[str, Param]) -> dict[str, Any]:
    return {name: p.default for name, p in params.items() if p.default is not REQUIRED}


def stored_defaults(params: dict[str, Param]) -> dict[str, Any]:
    """The defaults a cell's stored spec (and hash) carries: all but the neutral ones."""
    return {name: p.default for name, p in params.items() if p.default is not REQUIRED and not p.neutral}


def stored(params: dict[str, Param], spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` less the neutral settings that are at their default."""
    return {k: v for k, v in spec.items() if not (k in params and params[k].neutral and v == params[k].default)}


def stored_spec(experiment: str, params: dict[str, Param], settings: dict[str, Any]) -> dict[str, Any]:
    """What a cell's stored spec (and its hash) starts from: the experiment's defaults, less the
    neutral ones, then ``settings`` (a grid's ``fixed:`` or ``judge:`` block) less the neutral
    settings at their default, and the experiment's name. The one place a spec gets its defaults
    before it is stored; :func:`resolve` fills in the rest when it runs."""
    return {**stored_defaults(params), **stored(params, settings), "experiment": experiment}


def resolve(params: dict[str, Param], spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with every default filled in: what the experiment runs with (a spec
    stored before a setting existed, or without a neutral one, gets its default)."""
    return {**defaults(params), **spec}


def required(params: dict[str, Param]) -> list[str]:
    return [name for name, p in params.items() if p.default is REQUIRED]
