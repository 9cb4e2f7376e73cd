"""Resource types, selectors, discovery/OpenAPI documents and table output for the stand-in
Kubernetes API in kube.py (pure functions, no server state)."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
DEFAULT_NAMESPACE = "unjucks-prod"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    plural: str
    singular: str
    kind: str
    group: str  # "" for core
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
    ResourceType("pods", "pod", "Pod", "", True, ("po",), ("status",)),
    ResourceType("services", "service", "Service", "", True, ("svc",), ("status",)),
    ResourceType("configmaps", "configmap", "ConfigMap", "", True, ("cm",)),
    ResourceType("secrets", "secret", "Secret", ""),
    ResourceType("namespaces", "namespace", "Namespace", "", False, ("ns",), ("status",)),
    ResourceType("deployments", "deployment", "Deployment", "apps", True, ("deploy",), ("scale", "status")),
    ResourceType("replicasets", "replicaset", "ReplicaSet", "apps", True, ("rs",), ("scale", "status")),
    ResourceType("controllerrevisions", "controllerrevision", "ControllerRevision", "apps"),
    # the maintenance page of the runbook is an annotation on the ingress
    ResourceType("ingresses", "ingress", "Ingress", "networking.k8s.io", True, ("ing",), ("status",)),
]
BY_PATH = {(r.api_version, r.plural): r for r in RESOURCES}
ALIASES = {
    a.lower(): r for r in RESOURCES for a in (r.plural, r.singular, r.kind, r.qualified, *r.short_names)
}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def resource_type(kind: str) -> ResourceType:
    try:
        return ALIASES[kind.lower()]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known: {sorted(r.plural for r in RESOURCES)}") from None


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rand_suffix(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _prune(value: Any) -> Any:
    """Drop nulls and empty maps/lists (kubectl round-trips templates through Go structs, adding them)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def template_hash(template: Obj) -> str:
    tpl = copy.deepcopy(template)
    tpl.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return hashlib.sha256(json.dumps(_prune(tpl), sort_keys=True).encode()).hexdigest()[:10]


def owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def label_match(labels: dict[str, str], selector: str) -> bool:
    for term in re.split(r",(?![^(]*\))", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif m := re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", term):
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: Obj, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.fullmatch(r"([^!=]+?)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            continue
        path, op, value = m.groups()
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if (str(cur if cur is not None else "") == value) != (op != "!="):
            return False
    return True


def same_object(a: Obj, b: Obj) -> bool:
    """Equal ignoring metadata.resourceVersion."""

    def strip(o: Obj) -> Obj:
        return {**o, "metadata": {k: v for k, v in o.get("metadata", {}).items() if k != "resourceVersion"}}

    return strip(a) == strip(b)


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def discovery(path: str, server_address: str) -> Obj | None:
    if path == "/version":
        return {
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0",
            "gitCommit": "runproc-test",
            "gitTreeState": "clean",
            "buildDate": "2024-12-11T00:00:00Z",
            "goVersion": "go1.23.3",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    groups = sorted({r.group for r in RESOURCES if r.group})
    if path == "/apis":
        gv = [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
            }
            for g in groups
        ]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": gv}
    for gv_path, group in [("/api/v1", ""), *((f"/apis/{g}/v1", g) for g in groups)]:
        if path == gv_path:
            resources: list[Obj] = []
            for r in (r for r in RESOURCES if r.group == group):
                resources.append(
                    {
                        "name": r.plural,
                        "singularName": r.singular,
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": VERBS,
                        "shortNames": list(r.short_names),
                        "categories": ["all"]
                        if r.plural in ("pods", "services", "deployments", "replicasets")
                        else [],
                    }
                )
                for sub in r.subresources:
                    scale = sub == "scale"
                    resources.append(
                        {
                            "name": f"{r.plural}/{sub}",
                            "singularName": "",
                            "namespaced": r.namespaced,
                            "group": "autoscaling" if scale else r.group,
                            "version": "v1",
                            "kind": "Scale" if scale else r.kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group and f"{group}/v1" or "v1",
                "resources": resources,
            }
    return None


def openapi_v3(path: str) -> Obj | None:
    """Just enough OpenAPI v3 for kubectl to see that every resource supports server-side
    field validation (so ``apply``/``create -f`` need no client-side schema). /openapi/v2 is a 404."""
    gvs = {"api/v1": ""} | {f"apis/{g}/v1": g for g in sorted({r.group for r in RESOURCES if r.group})}
    if path == "/openapi/v3":
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=runproc1"} for gv in gvs}}
    group = gvs.get(path.removeprefix("/openapi/v3/"))
    if group is None:
        return None
    params = [
        {"name": n, "in": "query", "schema": {"type": "string"}}
        for n in ("dryRun", "fieldManager", "fieldValidation")
    ]
    paths: Obj = {}
    for r in (r for r in RESOURCES if r.group == group):
        prefix = f"/{path.removeprefix('/openapi/v3/')}" + ("/namespaces/{namespace}" if r.namespaced else "")
        gvk = {"group": r.group, "version": "v1", "kind": r.kind}
        op = {
            "parameters": params,
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{prefix}/{r.plural}/{{name}}"] = {"get": op, "put": op, "patch": op, "delete": op}
        paths[f"{prefix}/{r.plural}"] = {"get": op, "post": op}
    return {
        "openapi": "3.0.0",
        "info": {"title": "runproc test API", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def age_of(ts: str) -> str:
    try:
        secs = int(time.time() - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except (TypeError, ValueError):
        return "<unknown>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{max(secs, 0)}s"


def table(rt: ResourceType, items: list[Obj]) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    for o in items:
        name, age, spec, st = (
            o["metadata"]["name"],
            age_of(o["metadata"].get("creationTimestamp", "")),
            o.get("spec", {}),
            o.get("status", {}),
        )
        if rt.plural == "deployments":
            rows.append(
                [
                    name,
                    f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
                    st.get("updatedReplicas", 0),
                    st.get("availableReplicas", 0),
                    age,
                ]
            )
        elif rt.plural == "replicasets":
            rows.append(
                [name, spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0), age]
            )
        elif rt.plural == "pods":
            cs = st.get("containerStatuses", [])
            rows.append(
                [
                    name,
                    f"{sum(c.get('ready', False) for c in cs)}/{len(spec.get('containers', []))}",
                    st.get("phase", "Pending"),
                    sum(c.get("restartCount", 0) for c in cs),
                    age,
                ]
            )
        elif rt.plural == "services":
            ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
            rows.append(
                [
                    name,
                    spec.get("type", "ClusterIP"),
                    spec.get("clusterIP", ""),
                    "<none>",
                    ports or "<none>",
                    age,
                ]
            )
        elif rt.plural == "namespaces":
            rows.append([name, st.get("phase", "Active"), age])
        else:
            rows.append([name, age])
    columns = {
        "deployments": ["Name", "Ready", "Up-to-date", "Available", "Age"],
        "replicasets": ["Name", "Desired", "Current", "Ready", "Age"],
        "pods": ["Name", "Ready", "Status", "Restarts", "Age"],
        "services": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"],
        "namespaces": ["Name", "Status", "Age"],
    }.get(rt.plural, ["Name", "Age"])
    return columns, rows
