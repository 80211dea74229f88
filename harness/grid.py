"""Grid files: parse, validate every problem at once, expand into cells.

A grid file (YAML, read with the safe loader)::

    name: demo                      # required: the grid's name in the database
    experiment: tiny_lm             # which experiment the cells run
    fixed: {steps: 40}              # settings shared by every cell
    axes:                           # crossed with each other
      activation: [gelu, relu]
      lr: [1.0e-3, 3.0e-3]
    zip:                            # each group varies together (equal lengths)
      - {model: [tiny-gpt2, tiny-gpt2-deep], batch_size: [8, 4]}
    exclude:                        # drop cells matching every key of a rule
      - {activation: relu, lr: 3.0e-3}
    include:                        # explicit extra cells
      - {activation: relu, lr: 1.0e-2}
    retry: {max_attempts: 3, backoff_s: 10}
    priority: 0
    compare:                        # a PairRM judge job per pair of cells that differ only here
      activation: [gelu, relu]      # (arm a, arm b); the experiment must store answers (eval_prompts)
    judge: {ranker: /models/PairRM} # settings of those judge jobs (harness.experiments.judge)

Cells are the product of the axes and zip groups, less the exclusions, plus the
extra cells. A cell's *resolved spec* is the experiment's defaults, then ``fixed``,
then the cell's factors; its hash (sha256 of the canonical JSON) makes enqueueing
idempotent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from db.errors import GridlabError
from harness import experiments, inputs
from harness.params import required, resolve, stored_spec
from jobs import resources as resources_mod
from jobs.params import Param
from slurm import settings as slurm_settings

TOP_LEVEL_KEYS = ("name", "description", "experiment", "fixed", "axes", "zip", "exclude", "include", "retry", "priority", "slurm",
                  "compare", "judge", "resources")
RETRY_KEYS = ("max_attempts", "backoff_s")
DEFAULT_EXPERIMENT = "tiny_lm"
#: A product larger than this needs ``--yes``: it is probably a mistake.
LARGE_GRID = 1_000_000
#: Grid files are shallow (a mapping of mappings of lists); deeper nesting is a mistake or an attack.
MAX_DEPTH = 32
#: Values a grid file may hold once its YAML aliases are expanded (an alias "bomb" is millions).
MAX_NODES = 200_000
#: The grids.name column's length.
MAX_NAME = 200


class GridFileError(GridlabError):
    """A grid file has problems; ``problems`` lists them all, each with its location."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        head = f"{path}: " + ("; ".join(problems) if len(problems) <= 1 else f"{len(problems)} problems: " + "; ".join(problems))
        super().__init__(head, "fix the grid file and run the command again")


@dataclass(frozen=True, slots=True)
class Cell:
    # Field order is the order of Grid.cell_records' tuples.
    factors: dict[str, Any]
    spec: dict[str, Any]
    spec_hash: str
    spec_json: str  # canonical JSON: what the hash is of
    factors_json: str  # json.dumps(factors): what the job row stores


@dataclass
class Grid:
    name: str
    experiment: str
    path: str
    source: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    exclude: list[dict[str, list[Any]]]
    include: list[dict[str, Any]]
    max_attempts: int = 3
    backoff_s: float = 10.0
    priority: int = 0
    slurm: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: factor -> (arm a's value, arm b's value): judge jobs for cells differing only there
    compare: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: settings of the judge jobs (harness.experiments.judge.GRID_SETTINGS)
    judge: dict[str, Any] = field(default_factory=dict)
    #: what cells need (jobs.resources): their resource class, per cell
    resources: resources_mod.Plan = field(default_factory=resources_mod.Plan)

    @property
    def factor_names(self) -> list[str]:
        names = list(self.axes)
        for group in self.zips:
            names.extend(group)
        return names

    def product_size(self) -> int:
        size = math.prod(len(v) for v in self.axes.values())
        for group in self.zips:
            size *= len(next(iter(group.values())))
        return size

    def cells(self) -> Iterator[Cell]:
        """Every cell, in file order, exclusions applied, extra cells last; each once."""
        return itertools.starmap(Cell, self.cell_records())

    def cell_records(self) -> Iterator[tuple[dict[str, Any], dict[str, Any], str, str, str]]:
        """What :meth:`cells` yields, as plain tuples in :class:`Cell`'s field order, for
        callers that turn 100,000 cells into something else (making each Cell object cost
        a fifth of expansion)."""
        params = experiments.load(self.experiment).PARAMS
        # Neutral settings at their default stay out of the stored spec and its hash (harness.params).
        base = stored_spec(self.experiment, params, self.fixed)
        encode = _SpecEncoder(base)
        levels: list[list[tuple[tuple[str, Any], ...]]] = [[((n, v),) for v in self.axes[n]] for n in self.axes]
        for group in self.zips:
            keys = list(group)
            levels.append([tuple(zip(keys, values)) for values in zip(*(group[k] for k in keys))])
        excluded = self._excluded if self.exclude else None
        # No axes and no zip groups: the grid is its extra cells only (not one default cell more).
        product = encode.product(levels, excluded) if levels else ()
        seen: set[str] = set()
        for factors, text, factors_text in itertools.chain(product, map(encode.one, self.include)):
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                yield factors, {**base, **factors}, digest, text, factors_text

    def _excluded(self, factors: dict[str, Any]) -> bool:
        return any(all(factors.get(k) in values for k, values in rule.items()) for rule in self.exclude)


class _SpecEncoder:
    """The canonical JSON of ``{**base, **factors}`` and the JSON of ``factors``, fast.

    Equal, byte for byte, to :func:`canonical_json` of the spec and ``json.dumps`` of
    the factors. A grid's cells share their keys and repeat their values, so each
    ``"key":value`` fragment is encoded once, and the crossed cells (:meth:`product`)
    are filled in level by level: the outer levels' fragments go into a template once
    per outer combination, and each cell only fills the last level's slots."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self._base_fragments = {k: _fragment(k, v) for k, v in base.items()}

    def one(self, factors: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        """(factors, spec JSON, factors JSON) of one cell."""
        spec = {**self.base, **factors}
        parts = [self._base_fragments[k] if k not in factors else _fragment(k, spec[k]) for k in sorted(spec)]
        return dict(factors), "{" + ",".join(parts) + "}", json.dumps(factors)

    def product(self, levels: list[list[tuple[tuple[str, Any], ...]]], excluded=None):
        """(factors, spec JSON, factors JSON) of every cell of the product of ``levels``
        (each a list of choices; a choice is the (key, value) pairs it sets), in order,
        less the cells ``excluded`` says to drop."""
        keys = [k for level in levels for k, _ in level[0]]
        slot = {k: i for i, k in enumerate(keys)}
        # The spec JSON as segments: constant text, or the index of a factor's slot.
        segments: list[str | int] = []
        for key in sorted(set(self.base) | set(keys)):
            segments.append(slot[key] if key in slot else self._base_fragments[key])
        choices = [
            [(dict(pairs), {slot[k]: _fragment(k, v) for k, v in pairs}, ", ".join(f"{json.dumps(k)}: {json.dumps(v)}"
                                                                                for k, v in pairs))
             for pairs in level]
            for level in levels
        ]
        *outer, last = choices
        # The last level's fragments in the order of their slots in the template (sorted keys).
        last_slots = [slot[k] for k in sorted(k for k, _ in levels[-1][0])]
        inner = [(pairs, tuple(fragments[i] for i in last_slots), text + "}") for pairs, fragments, text in last]
        for combo in itertools.product(*outer):
            factors = {k: v for choice in combo for k, v in choice[0].items()}
            filled = {i: text for choice in combo for i, text in choice[1].items()}
            template = _template(segments, filled)
            head = "{" + "".join(choice[2] + ", " for choice in combo)
            for pairs, fragments, tail in inner:
                cell = {**factors, **pairs}
                if excluded is not None and excluded(cell):
                    continue
                yield cell, template % fragments, head + tail


def _template(segments: list[str | int], filled: dict[int, str]) -> str:
    """A %-template of the spec JSON: constants and the outer levels' fragments written
    in, ``%s`` in each slot of the last level (in segment order: sorted keys)."""
    out = ["{"]
    for i, seg in enumerate(segments):
        if i:
            out.append(",")
        if isinstance(seg, str):
            out.append(seg.replace("%", "%%"))
        elif seg in filled:
            out.append(filled[seg].replace("%", "%%"))
        else:
            out.append("%s")
    out.append("}")
    return "".join(out)


def _fragment(key: str, value: Any) -> str:
    return canonical_json(key) + ":" + canonical_json(value)


def canonical_json(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


# --- loading and validation ------------------------------------------------------------


def load(path: str | Path, *, allow_large: bool = False) -> Grid:
    """Read and validate a grid file. Raises GridFileError listing every problem."""
    path = Path(path)
    where = str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridFileError(where, ["file not found"]) from None
    except IsADirectoryError:
        raise GridFileError(where, ["is a folder, not a grid file"]) from None
    except UnicodeDecodeError:
        raise GridFileError(where, ["is not a UTF-8 text file"]) from None
    return parse(source, where, allow_large=allow_large)


def load_yaml(source: str, where: str) -> Any:
    """The YAML document, read with the safe loader after two checks the loader lacks:
    nesting depth (checked on the event stream, which is not recursive) and the size of
    the document once aliases are expanded (an alias bomb is a few lines of text)."""
    try:
        depth = 0
        for event in yaml.parse(source, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise GridFileError(where, [f"line {mark.line + 1}, column {mark.column + 1}: nested more than "
                                                f"{MAX_DEPTH} levels deep; a grid file is a few levels of mappings and lists"])
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        loader = yaml.SafeLoader(source)
        try:
            node = loader.get_single_node()
            if node is not None:
                try:
                    size = _expanded_size(node, {})
                except _RecursiveAlias as exc:
                    mark = exc.node.start_mark
                    raise GridFileError(where, [f"line {mark.line + 1}, column {mark.column + 1}: an alias refers "
                                                "to a value that contains it (a recursive alias); write it out"]) from None
                if size > MAX_NODES:
                    raise GridFileError(where, [f"its YAML aliases expand to more than {MAX_NODES:,} values "
                                                "(an alias bomb?); write the values out, or use fewer aliases"])
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GridFileError(where, [f"{loc}YAML syntax error: {problem}"]) from None


class _RecursiveAlias(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded; each node is visited once (an alias
    is the same node object), so this costs the text's size, not the expansion's. The
    depth check has already bounded the recursion. A node met again while its own values
    are being counted is a recursive alias (raises _RecursiveAlias)."""
    known = memo.get(id(node))
    if known == -1:
        raise _RecursiveAlias(node)
    if known is not None:
        return known
    memo[id(node)] = -1  # in progress
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_NODES * 10)
    return memo[id(node)]


def storable_problems(doc: Any, loc: str = "", out: list[str] | None = None) -> list[str]:
    """Keys and values the database cannot store: text with NUL bytes or lone surrogates,
    integers past 64 bits, NaN and infinity; each with where it is."""
    out = [] if out is None else out
    if isinstance(doc, dict):
        for key, value in doc.items():
            here = f"{loc}.{key}" if loc else str(key)
            if isinstance(key, str) and (problem := inputs.text_problem(key)):
                out.append(f"{inputs._shown(here)}: the key {problem}")
                continue
            if not isinstance(key, str):
                storable_problems(key, f"{here} (a key)", out)
            storable_problems(value, here, out)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            storable_problems(value, f"{loc}[{i}]", out)
    elif isinstance(doc, str):
        if problem := inputs.text_problem(doc):
            out.append(f"{loc}: the text {problem}")
    elif problem := inputs.number_problem(doc):
        out.append(f"{loc}: {problem}")
    return out


def parse(source: str, where: str = "<grid>", *, allow_large: bool = False) -> Grid:
    doc = load_yaml(source, where)
    if not isinstance(doc, dict):
        raise GridFileError(where, ["expected a mapping of keys (name, axes, ...) at the top level"])
    unstorable = storable_problems(doc)
    if unstorable:
        raise GridFileError(where, unstorable)

    problems: list[str] = []
    unknown = [k for k in doc if k not in TOP_LEVEL_KEYS]
    for k in unknown:
        problems.append(f"unknown key {k!r} (valid keys: {', '.join(TOP_LEVEL_KEYS)})")

    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("name: required, a non-empty string naming the grid")
        name = ""
    elif (problem := name_problem(name)) is not None:
        problems.append(f"name: {problem}")

    experiment = doc.get("experiment", DEFAULT_EXPERIMENT)
    params: dict[str, Param] | None = None
    if not isinstance(experiment, str) or experiment not in experiments.REGISTRY:
        problems.append(f"experiment: unknown experiment {experiment!r} (known: {', '.join(sorted(experiments.REGISTRY))})")
    else:
        params = experiments.load(experiment).PARAMS

    fixed = _mapping(doc, "fixed", problems)
    axes_raw = _mapping(doc, "axes", problems)
    zips_raw = doc.get("zip") or []
    if not isinstance(zips_raw, list):
        problems.append("zip: expected a list of groups like {lr: [...], warmup: [...]}")
        zips_raw = []

    def check_name(key: str, loc: str) -> bool:
        if params is not None and key not in params:
            problems.append(f"{loc}: unknown setting {key!r} for experiment {experiment!r} (valid: {', '.join(params)})")
            return False
        return True

    def check_value(key: str, value: Any, loc: str) -> Any:
        if params is None or key not in params:
            return value
        coerced, problem = params[key].coerce(value)
        if problem:
            problems.append(f"{loc}: {problem}")
        return coerced

    fixed_clean: dict[str, Any] = {}
    for key, value in fixed.items():
        if check_name(key, f"fixed.{key}"):
            fixed_clean[key] = check_value(key, value, f"fixed.{key}")

    axes: dict[str, list[Any]] = {}
    for key, values in axes_raw.items():
        loc = f"axes.{key}"
        if not check_name(key, loc):
            continue
        values = _axis_values(values, loc, problems)
        axes[key] = [check_value(key, v, f"{loc}[{i}]") for i, v in enumerate(values)]
        if key in fixed_clean:
            problems.append(f"{loc}: {key!r} is both fixed and an axis; keep one")

    zips: list[dict[str, list[Any]]] = []
    for gi, group in enumerate(zips_raw):
        loc = f"zip[{gi}]"
        if not isinstance(group, dict) or not group:
            problems.append(f"{loc}: expected a mapping of equally long lists")
            continue
        clean: dict[str, list[Any]] = {}
        for key, values in group.items():
            kloc = f"{loc}.{key}"
            if not check_name(key, kloc):
                continue
            values = _axis_values(values, kloc, problems, unique=False)  # columns repeat; rows must not
            clean[key] = [check_value(key, v, f"{kloc}[{i}]") for i, v in enumerate(values)]
            if key in axes or key in fixed_clean or any(key in z for z in zips):
                problems.append(f"{kloc}: {key!r} is already set elsewhere (fixed, axes or another zip)")
        lengths = {len(v) for v in clean.values()}
        if len(lengths) > 1:
            problems.append(f"{loc}: lists must have equal lengths, got {', '.join(f'{k}={len(v)}' for k, v in clean.items())}")
        elif clean:
            rows = [json.dumps(row, sort_keys=True, default=str) for row in zip(*clean.values())]
            if len(set(rows)) != len(rows):
                problems.append(f"{loc}: repeats a row (the same values at two positions of every list)")
        if clean:
            zips.append(clean)

    factor_values: dict[str, list[Any]] = {**axes}
    for group in zips:
        factor_values.update(group)

    exclude: list[dict[str, list[Any]]] = []
    for ri, rule in enumerate(_list(doc, "exclude", problems)):
        loc = f"exclude[{ri}]"
        if not isinstance(rule, dict) or not rule:
            problems.append(f"{loc}: expected a mapping like {{activation: relu, lr: 0.003}}")
            continue
        clean_rule: dict[str, list[Any]] = {}
        for key, value in rule.items():
            if key not in factor_values:
                problems.append(f"{loc}.{key}: not an axis of this grid (axes: {', '.join(factor_values) or 'none'})")
                continue
            wanted = value if isinstance(value, list) else [value]
            wanted = [check_value(key, v, f"{loc}.{key}") for v in wanted]
            for v in wanted:
                if v not in factor_values[key]:
                    problems.append(f"{loc}.{key}: {v!r} is not a value of axis {key} ({', '.join(map(str, factor_values[key]))})")
            clean_rule[key] = wanted
        exclude.append(clean_rule)

    include: list[dict[str, Any]] = []
    for ci, extra in enumerate(_list(doc, "include", problems)):
        loc = f"include[{ci}]"
        if not isinstance(extra, dict) or not extra:
            problems.append(f"{loc}: expected a mapping of settings for one extra cell")
            continue
        clean_cell = {}
        for key, value in extra.items():
            if check_name(key, f"{loc}.{key}"):
                clean_cell[key] = check_value(key, value, f"{loc}.{key}")
        include.append(clean_cell)

    retry = _mapping(doc, "retry", problems)
    for key in retry:
        if key not in RETRY_KEYS:
            problems.append(f"retry.{key}: unknown key (valid keys: {', '.join(RETRY_KEYS)})")
    max_attempts = retry.get("max_attempts", 3)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        problems.append(f"retry.max_attempts: expected an integer >= 1, got {max_attempts!r}")
    backoff_s, problem = Param(float, minimum=0.0).coerce(retry.get("backoff_s", 10.0))
    if problem:
        problems.append(f"retry.backoff_s: {problem}")
    if isinstance(max_attempts, int) and not isinstance(max_attempts, bool) and max_attempts > MAX_ATTEMPTS:
        problems.append(f"retry.max_attempts: at most {MAX_ATTEMPTS:,}, got {max_attempts:,}")
    if isinstance(backoff_s, float) and math.isfinite(backoff_s) and backoff_s > MAX_BACKOFF_S:
        problems.append(f"retry.backoff_s: at most {MAX_BACKOFF_S:,.0f} s (a week), got {backoff_s:g}")
    priority = doc.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append(f"priority: expected an integer, got {priority!r}")
    elif not -inputs.INT32_MAX <= priority <= inputs.INT32_MAX:
        problems.append(f"priority: expected an integer from {-inputs.INT32_MAX:,} to {inputs.INT32_MAX:,}, "
                        f"got {inputs._short(priority)}")
    slurm, slurm_problems = slurm_settings.validate(doc.get("slurm"))
    problems.extend(f"slurm: {p}" if p.startswith("expected") else f"slurm.{p}" for p in slurm_problems)

    if params is not None:
        given = set(fixed_clean) | set(factor_values)
        for key in required(params):
            if key not in given and not all(key in c for c in include or [{}]):
                problems.append(f"{key}: required by experiment {experiment!r}; set it under fixed or axes")

    if not factor_values and not include:
        problems.append("axes: the grid has no axes and no extra cells, so it has nothing to run")

    compare, judge = _compare_and_judge(doc, params, experiment, factor_values, include, check_value, problems)
    resource_plan = resources_mod.plan(doc.get("resources"), problems, factor_values=factor_values)

    description = doc.get("description") or ""
    if problems:
        raise GridFileError(where, problems)

    grid = Grid(
        name=name, experiment=experiment, path=where, source=source, fixed=fixed_clean, axes=axes, zips=zips,
        exclude=exclude, include=include, max_attempts=max_attempts, backoff_s=backoff_s, priority=priority,
        slurm=slurm, description=str(description), compare=compare, judge=judge, resources=resource_plan,
    )
    size = grid.product_size()
    if size > LARGE_GRID and not allow_large:
        raise GridFileError(where, [f"the axes multiply to {size:,} cells, more than {LARGE_GRID:,}; pass --yes if you mean it"])
    _check_cells(grid)
    return grid


#: Bounds of a grid's retry policy (the database's integers; a backoff past a week is a typo).
MAX_ATTEMPTS = 1_000_000
MAX_BACKOFF_S = 7 * 86400.0


def name_problem(name: str) -> str | None:
    """Why a grid name cannot be used, or None: it is shown in tables, typed after --grid
    and stored in a 200-character column."""
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters (the database's column), got {len(name):,}"
    if not name.isprintable():
        return f"{name!r} holds control characters (tabs, newlines, ...); use plain printable text"
    if "[" in name or "]" in name:
        return (f"{name!r} holds '[' or ']', which terminals read as markup (like [/bold]); "
                "name the grid without square brackets")
    if name != name.strip():
        return f"{name!r} starts or ends with spaces"
    return None


def _check_cells(grid: Grid, show: int = 5) -> None:
    """Settings that are valid alone but not together, per cell: its resource class (its GPUs
    against an explicit ``ranks``, and the class's own settings), then the experiment's
    ``check_spec`` on the spec it runs with (the ranks its class gives it included)."""
    experiment = experiments.load(grid.experiment)
    check = getattr(experiment, "check_spec", None)
    params = experiment.PARAMS
    classed = grid.resources != resources_mod.Plan()  # no resources: every cell is "default", which fits
    if check is None and not classed:
        return
    problems: list[str] = []
    for cell in grid.cells():
        resource_class = grid.resources.for_cell(cell.factors, cell.spec) if classed else resources_mod.DEFAULT
        given = cell.factors.get("ranks", grid.fixed.get("ranks"))
        where = "" if "ranks" in cell.factors else "fixed."
        if problem := resources_mod.from_name(resource_class).problem():
            problems.append(f"cell {cell.factors}: resources: {problem}")
        elif problem := experiments.ranks_problem(experiment, given, resource_class):
            problems.append(f"cell {cell.factors}: {where}{problem}")
        elif check is not None:
            spec = resolve(params, cell.spec)
            if "ranks" in spec:
                spec["ranks"] = experiments.ranks_for(experiment, spec, resource_class)
            if problem := check(spec):
                problems.append(f"cell {cell.factors}: {problem}")
    if problems:
        more = [f"and {len(problems) - show} more such cells (use exclude to drop them)"] if len(problems) > show else []
        raise GridFileError(grid.path, problems[:show] + more)


def _compare_and_judge(doc, params, experiment, factor_values, include, check_value, problems):
    """``compare:`` (factor -> two values) and ``judge:`` (judge job settings), checked."""
    compare_raw = _mapping(doc, "compare", problems)
    judge_raw = _mapping(doc, "judge", problems)
    compare: dict[str, tuple[Any, Any]] = {}
    if compare_raw and params is not None and "eval_prompts" not in params:
        problems.append(f"compare: experiment {experiment!r} stores no answers to judge (it has no eval_prompts "
                        "setting; see harness.evaluation.hook)")
    include_values: dict[str, list[Any]] = {}
    for extra in include:
        for key, value in extra.items():
            include_values.setdefault(key, []).append(value)
    for key, values in compare_raw.items():
        loc = f"compare.{key}"
        known = factor_values.get(key, []) + include_values.get(key, [])
        if not known:
            problems.append(f"{loc}: not a factor of this grid (factors: {', '.join(factor_values) or 'none'})")
            continue
        if not isinstance(values, list) or len(values) != 2:
            problems.append(f"{loc}: expected two values of {key} (arm a, arm b), like [{', '.join(map(str, known[:2]))}]")
            continue
        pair = tuple(check_value(key, v, f"{loc}") for v in values)
        if pair[0] == pair[1]:
            problems.append(f"{loc}: compares {pair[0]!r} with itself; give two different values")
            continue
        for v in pair:
            if v not in known:
                problems.append(f"{loc}: {v!r} is not a value of {key} in this grid ({', '.join(map(str, known))})")
        compare[key] = pair
    from harness.experiments import judge as judge_experiment

    judge: dict[str, Any] = {}
    if judge_raw and not compare_raw:
        problems.append("judge: settings for judge jobs, but the grid has no compare: section to make any")
    for key, value in judge_raw.items():
        if key not in judge_experiment.GRID_SETTINGS:
            problems.append(f"judge.{key}: unknown setting (valid: {', '.join(judge_experiment.GRID_SETTINGS)})")
            continue
        value, problem = judge_experiment.PARAMS[key].coerce(value)
        if problem:
            problems.append(f"judge.{key}: {problem}")
        judge[key] = value
    return compare, judge


def _mapping(doc: dict, key: str, problems: list[str]) -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{key}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _list(doc: dict, key: str, problems: list[str]) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list, got {type(value).__name__}")
        return []
    return value


def _axis_values(values: Any, loc: str, problems: list[str], *, unique: bool = True) -> list[Any]:
    if not isinstance(values, list):
        values = [values]
    if not values:
        problems.append(f"{loc}: an axis needs at least one value")
    for i, v in enumerate(values):
        if isinstance(v, (dict, list)):
            problems.append(f"{loc}[{i}]: values must be plain numbers, strings or booleans")
    if unique and len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
        problems.append(f"{loc}: repeats a value")
    return values
