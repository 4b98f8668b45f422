"""A pipeline's definition: its nodes and their checks, pure (no I/O).

A node has an `identifier`, either `job` (a job of the same project) or `approval`
(`{description}`), `needs` (node identifiers), `when` (`success`, `failure`, `always`) and, for a
job node, `parameters` ({KEY: template}, domain/pipeline_templates.py). `check_pipeline` refuses,
naming the node: a cycle, an unknown need, a result of a node that is not among its needs
(directly or not), neither or both of job and approval, an unknown job, a parameter the job does
not declare, a required job parameter not given, `{secrets[...]}`, an undeclared pipeline
parameter, duplicate identifiers, more than MAX_NODES nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestra.domain.identifiers import check_identifier, check_text
from orchestra.domain.parameters import parse_parameters
from orchestra.domain.pipeline_templates import (
    parameter_references,
    parse_template,
    result_references,
)
from orchestra.domain.webhooks import parse_webhook
from orchestra.errors import InvalidInput

PIPELINE_FIELDS = frozenset(
    {"identifier", "display_name", "description", "parameters", "nodes", "is_enabled", "webhook"}
)
NODE_FIELDS = frozenset({"identifier", "job", "approval", "needs", "when", "parameters"})
WHEN_VALUES = ("success", "failure", "always")
MAX_NODES = 500
MAX_NODE_PARAMETERS = 100
RESULT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")  # matched whole, as a run's results


@dataclass(frozen=True)
class JobParameter:
    """What a node needs to know of one parameter of its job."""

    key: str
    default: str | None
    secret: bool
    choices: tuple[str, ...] | None


def job_parameters(job: Any) -> list[JobParameter]:
    """A job's parameters, from a `Job` (domain/models.py) or from its fields as a mapping."""
    raw = job.get("parameters") if isinstance(job, Mapping) else getattr(job, "parameters", None)
    found: list[JobParameter] = []
    for item in raw or []:
        if isinstance(item, Mapping):
            choices = item.get("choices")
            found.append(
                JobParameter(
                    key=item["key"],
                    default=item.get("default"),
                    secret=bool(item.get("secret", False)),
                    choices=tuple(choices) if choices is not None else None,
                )
            )
        else:
            found.append(JobParameter(item.key, item.default, item.secret, item.choices))
    return found


def check_pipeline(values: Mapping[str, Any], jobs: Mapping[str, Any]) -> dict[str, Any]:
    """The normalized fields of a pipeline, or InvalidInput; `jobs` maps the identifiers of the
    project's jobs to their definitions (a `Job` or a mapping with `parameters`)."""
    if not isinstance(values, Mapping):
        raise InvalidInput("a pipeline must be a mapping")
    unknown = sorted(str(k) for k in values if k not in PIPELINE_FIELDS)
    if unknown:
        raise InvalidInput(f"pipeline: unknown fields {', '.join(unknown)}")
    identifier = check_identifier(values.get("identifier"), "pipeline identifier")
    parameters = parse_parameters(values.get("parameters"))
    for parameter in parameters:
        if parameter.secret:
            raise InvalidInput(
                f"pipeline parameter {parameter.key!r}: a pipeline's parameters cannot be secret "
                "(give the job a secret parameter with a default, or use a project secret)"
            )
    is_enabled = values.get("is_enabled", True)
    if not isinstance(is_enabled, bool):
        raise InvalidInput("is_enabled must be true or false")
    declared = {p.key for p in parameters}
    nodes = _check_nodes(values.get("nodes"), declared, jobs)
    return {
        "identifier": identifier,
        "display_name": check_text(values.get("display_name") or identifier, "display_name"),
        "description": check_text(values.get("description") or "", "description"),
        "parameters": [p.to_dict() for p in parameters],
        "nodes": nodes,
        "is_enabled": is_enabled,
        "webhook": parse_webhook(values.get("webhook"), declared, "pipeline"),
    }


def pipeline_shape(raw: object) -> dict[str, Any]:
    """A pipeline of an apply document before its check against the jobs: a mapping with an
    identifier."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("a pipeline must be a mapping")
    identifier = check_identifier(raw.get("identifier"), "pipeline identifier")
    return {**raw, "identifier": identifier}


def _check_nodes(raw: object, declared: set[str], jobs: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("nodes must be a non-empty list")
    if len(raw) > MAX_NODES:
        raise InvalidInput(f"a pipeline has at most {MAX_NODES} nodes, not {len(raw)}")
    nodes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        node = _check_node(item, index, jobs)
        if node["identifier"] in seen:
            raise InvalidInput(f"node {node['identifier']!r} appears more than once")
        seen.add(node["identifier"])
        nodes.append(node)
    for node in nodes:
        for need in node["needs"]:
            if need not in seen:
                raise InvalidInput(f"node {node['identifier']!r} needs unknown node {need!r}")
    topological_order(nodes)  # refuses a cycle, naming its nodes
    above = ancestors(nodes)
    for node in nodes:
        _check_templates(node, declared, above[node["identifier"]])
    return nodes


def _check_node(raw: object, index: int, jobs: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"nodes[{index}] must be a mapping with an identifier")
    name = raw.get("identifier")
    where = f"node {name!r}" if isinstance(name, str) else f"nodes[{index}]"
    unknown = sorted(str(k) for k in raw if k not in NODE_FIELDS)
    if unknown:
        raise InvalidInput(f"{where}: unknown fields {', '.join(unknown)}")
    identifier = check_identifier(name, f"nodes[{index}].identifier")
    job, approval = raw.get("job"), raw.get("approval")
    if (job is None) == (approval is None):
        raise InvalidInput(
            f"{where}: a node names exactly one of job and approval "
            "(approval: {} for an approval without a description)"
        )
    node: dict[str, Any] = {"identifier": identifier}
    parameters = _check_parameter_values(raw.get("parameters"), where)
    if approval is not None:
        if not isinstance(approval, Mapping) or set(approval) - {"description"}:
            raise InvalidInput(f"{where}: approval must be a mapping such as {{description: ...}}")
        if parameters:
            raise InvalidInput(f"{where}: an approval takes no parameters")
        description = approval.get("description") or ""
        node["approval"] = {"description": check_text(description, f"{where}: description")}
    else:
        job_identifier = check_identifier(job, f"{where}: job")
        if job_identifier not in jobs:
            raise InvalidInput(f"{where}: no job {job_identifier!r} in this project")
        _check_job_parameters(parameters, job_parameters(jobs[job_identifier]), where, job)
        node["job"] = job_identifier
    node["needs"] = _check_needs(raw.get("needs"), identifier, where)
    when = raw.get("when") or "success"
    if when not in WHEN_VALUES:
        raise InvalidInput(f"{where}: when must be one of {', '.join(WHEN_VALUES)}, not {when!r}")
    node["when"] = when
    node["parameters"] = parameters
    return node


def _check_parameter_values(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: parameters must be a mapping of keys to templates")
    if len(raw) > MAX_NODE_PARAMETERS:
        raise InvalidInput(f"{where}: at most {MAX_NODE_PARAMETERS} parameters")
    checked: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"{where}: parameter {key!r} must be a string")
        try:
            parse_template(value)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: parameter {key!r}: {exc}") from None
        checked[key] = value
    return checked


def _check_job_parameters(
    given: Mapping[str, str], declared: Sequence[JobParameter], where: str, job: object
) -> None:
    by_key = {p.key: p for p in declared}
    for key, value in given.items():
        parameter = by_key.get(key)
        if parameter is None:
            raise InvalidInput(f"{where}: job {job!r} declares no parameter {key!r}")
        if parameter.secret:
            raise InvalidInput(
                f"{where}: parameter {key!r} of job {job!r} is secret: a node cannot give it "
                "(its value would be stored in plain text)"
            )
        constant = "{" not in value and "}" not in value
        if constant and parameter.choices is not None and value not in parameter.choices:
            raise InvalidInput(
                f"{where}: parameter {key!r} must be one of {list(parameter.choices)}"
            )
    for parameter in declared:
        if parameter.key not in given and parameter.default is None:
            raise InvalidInput(
                f"{where}: job {job!r} requires parameter {parameter.key!r} (it has no default)"
            )


def _check_needs(raw: object, identifier: str, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"{where}: needs must be a list of node identifiers")
    needs: list[str] = []
    seen: set[str] = set()
    for need in raw:
        check_identifier(need, f"{where}: needs")
        if need == identifier:
            raise InvalidInput(f"{where}: a node cannot need itself (a cycle: {identifier})")
        if need in seen:
            raise InvalidInput(f"{where}: needs {need!r} twice")
        seen.add(need)
        needs.append(need)
    return needs


def _check_templates(node: Mapping[str, Any], declared: set[str], above: set[str]) -> None:
    where = f"node {node['identifier']!r}"
    for key, template in node["parameters"].items():
        for parameter in parameter_references(template):
            if parameter not in declared:
                raise InvalidInput(
                    f"{where}: parameter {key!r} uses {{parameters[{parameter}]}}, "
                    "which the pipeline does not declare"
                )
        for source, result in result_references(template):
            if source not in above:
                raise InvalidInput(
                    f"{where}: parameter {key!r} uses a result of node {source!r}, which is not "
                    "among its needs (directly or not)"
                )
            if not RESULT_KEY.fullmatch(result):
                raise InvalidInput(
                    f"{where}: parameter {key!r}: {result!r} cannot be a result's key "
                    f"(^{RESULT_KEY.pattern}$)"
                )


def topological_order(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The node identifiers, each after its needs (ties in the order given); InvalidInput naming
    the nodes of a cycle if there is one. Needs must name nodes of the list."""
    index = {n["identifier"]: i for i, n in enumerate(nodes)}
    waiting = {n["identifier"]: len(set(n.get("needs", ()))) for n in nodes}
    needed_by: dict[str, list[str]] = {}
    for node in nodes:
        for need in set(node.get("needs", ())):
            needed_by.setdefault(need, []).append(node["identifier"])
    order: list[str] = []
    wave = [n["identifier"] for n in nodes if waiting[n["identifier"]] == 0]
    while wave:  # each wave: the nodes whose needs are all in the waves before, in given order
        order += wave
        ready: list[str] = []
        for identifier in wave:
            for later in needed_by.get(identifier, ()):
                waiting[later] -= 1
                if waiting[later] == 0:
                    ready.append(later)
        wave = sorted(ready, key=index.__getitem__)
    if len(order) < len(nodes):
        placed = set(order)
        cycle = _a_cycle([n for n in nodes if n["identifier"] not in placed])
        raise InvalidInput(
            f"node {cycle[0]!r}: the needs form a cycle: {' -> '.join([*cycle, cycle[0]])}"
        )
    return order


def _a_cycle(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """One cycle among nodes none of which can be placed (each has a need among them)."""
    needs = {n["identifier"]: list(n.get("needs", ())) for n in nodes}
    path: list[str] = []
    current = nodes[0]["identifier"]
    while current not in path:
        path.append(current)
        current = next(m for m in needs[current] if m in needs)
    cycle = path[path.index(current) :][::-1]  # in the order the nodes would run
    position = {n["identifier"]: index for index, n in enumerate(nodes)}
    first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
    return cycle[first:] + cycle[:first]  # from the node given first


def ancestors(nodes: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Each node's needs, directly or not (the nodes must have no cycle)."""
    by_identifier = {n["identifier"]: n for n in nodes}
    names = [n["identifier"] for n in nodes]
    bit = {name: 1 << i for i, name in enumerate(names)}
    masks: dict[str, int] = {}  # a bit per node above: a dense graph of 500 nodes stays fast
    for identifier in topological_order(nodes):
        mask = 0
        for need in by_identifier[identifier].get("needs", ()):
            mask |= bit[need] | masks[need]
        masks[identifier] = mask
    return {
        identifier: {names[i] for i in range(mask.bit_length()) if mask >> i & 1}
        for identifier, mask in masks.items()
    }


def levels(nodes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each node's depth: 0 without needs, else one more than its deepest need."""
    by_identifier = {n["identifier"]: n for n in nodes}
    depth: dict[str, int] = {}
    for identifier in topological_order(nodes):
        needs = by_identifier[identifier].get("needs", ())
        depth[identifier] = 1 + max((depth[n] for n in needs), default=-1)
    return depth


def jobs_named(nodes: Iterable[Mapping[str, Any]]) -> set[str]:
    """The jobs a pipeline's nodes run."""
    return {n["job"] for n in nodes if n.get("job")}


@dataclass(frozen=True)
class Pipeline:
    project: str
    identifier: str
    display_name: str
    description: str
    parameters: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    is_enabled: bool
    creation_date: datetime
    update_date: datetime
    # Its webhook, as stored (its secret encrypted), or None (domain/webhooks.py).
    webhook: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Pipeline:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    def fields(self) -> dict[str, Any]:
        """Its definition, as `check_pipeline` takes it (for PATCH)."""
        return {
            "identifier": self.identifier,
            "display_name": self.display_name,
            "description": self.description,
            "parameters": self.parameters,
            "nodes": self.nodes,
            "is_enabled": self.is_enabled,
            "webhook": self.webhook,
        }
