"""Offline readiness: what a grid needs on disk (models, tokenizers, datasets, the PairRM ranker and
its backbone, prompt files, lm-eval task data), whether each is here and loadable, and fetching what
is not where the hub is reachable.

Compute nodes of clusters often have no internet. ``gridlab fetch GRID`` (on a machine that reaches
the hub) fills the Hugging Face caches; ``gridlab check GRID`` (and ``gridlab launch``, before it
submits anything) proves offline that everything is there, and names each missing piece with the
command that fetches it.

- :mod:`~harness.readiness.needs`: what a grid's (or a queue's) jobs need, from their resolved specs;
- :mod:`~harness.readiness.check`: where each need is looked up, what proves it loadable, the table;
- :mod:`~harness.readiness.fetch`: the downloads, through one :class:`~harness.readiness.fetch.Hub`.
"""
