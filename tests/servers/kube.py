"""A stand-in Kubernetes API server (plain HTTP on 127.0.0.1) that the real ``kubectl`` can talk to.

Fixtures:
  kube_api -> KubeApi (session)
  kube     -> KubeApi (function): the same server, reset (store, requests, knobs) before the test

In-memory store for pods, services, configmaps, secrets, namespaces (v1) and deployments, replicasets,
controllerrevisions (apps/v1). A tiny "controller" makes every deployment instantly rolled out
(status matches spec, generation observed), keeps one ReplicaSet per pod template with
``deployment.kubernetes.io/revision`` annotations (so rollout history/undo work) and, unless
``simulate_pods`` is False, one Running+Ready pod per replica. ``dryRun=All`` never changes the store.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ._common import QuietThreadingHTTPServer, ServerStartError, read_request_body
from ._kubemodel import (
    BY_PATH,
    DEFAULT_NAMESPACE,
    HASH_LABEL,
    RESOURCES,
    REVISION,
    ApiError,
    Obj,
    ResourceType,
    discovery,
    field_match,
    label_match,
    now,
    openapi_v3,
    owned_by,
    owner_ref,
    rand_suffix,
    resource_type,
    same_object,
    selector_string,
    table,
    template_hash,
)
from ._kubepatch import PatchError, apply_patch


@dataclass
class KubeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def dry_run(self) -> bool:
        """dryRun=All in the query string, or in a DeleteOptions body (how kubectl delete sends it)."""
        if "All" in self.query.get("dryRun", []):
            return True
        try:
            body = self.json()
        except ValueError:
            return False
        return isinstance(body, dict) and "All" in (body.get("dryRun") or [])

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class KubeApi:
    def __init__(self, kubectl_bin: str | None = None) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.requests: list[KubeRequest] = []
        self._store: dict[str, dict[tuple[str, str], Obj]] = {}
        self._events: list[tuple[int, str, str, str, Obj]] = []  # (rv, type, plural, namespace, object)
        self._rv = 0
        self.auto_rollout = True  # False: deployments never report rolled out (rollout status times out)
        self.simulate_pods = True  # False: the controller creates no pods
        self.namespace = DEFAULT_NAMESPACE
        self.kubectl_bin = kubectl_bin or shutil.which("kubectl") or "/usr/bin/kubectl"
        self._httpd = QuietThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.host = "127.0.0.1"
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{self.host}:{self.port}"
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="runproc-kube-"))
        self.cache_dir = self.tmp_dir / "cache"
        self.kubeconfig_path = self.tmp_dir / "kubeconfig"
        self.kubeconfig_path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: test\n  user: {}\n"
            f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {DEFAULT_NAMESPACE}\n"
            "current-context: test\n"
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-kube-api", daemon=True)
        self.reset()

    # ------------------------------------------------------------------ lifecycle / test helpers
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def reset(self) -> None:
        """Empty the store (keeping namespaces default, kube-system, unjucks-prod), requests and knobs."""
        with self._lock:
            self.requests.clear()
            self._store = {r.plural: {} for r in RESOURCES}
            self._events.clear()
            self.auto_rollout = True
            self.simulate_pods = True
            for ns in ("default", "kube-system", DEFAULT_NAMESPACE):
                self.seed("namespaces", None, {"metadata": {"name": ns}})

    def env(self) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG (context test, namespace unjucks-prod) + a private cache."""
        return {"KUBECONFIG": str(self.kubeconfig_path), "KUBECACHEDIR": str(self.cache_dir)}

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server (``--kubeconfig ... --context test``)."""
        cmd = [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig_path), "--context", "test", *args]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env()}
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
            )
        return out

    def seed(self, kind: str, namespace: str | None, obj: Obj) -> Obj:
        """Store ``obj`` as if created through the API (defaults filled, controller run); returns a copy."""
        rt = resource_type(kind)
        ns = (
            (namespace or obj.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE)
            if rt.namespaced
            else ""
        )
        with self._lock:
            return self._create(rt, ns, copy.deepcopy(obj), dry_run=False)

    def seed_deployment(
        self,
        name: str,
        namespace: str = DEFAULT_NAMESPACE,
        replicas: int = 2,
        containers: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Obj:
        """Seed a Deployment selecting ``labels`` (default app=<name>) with ``containers`` {name: image}."""
        labels = labels or {"app": name}
        containers = containers or {name: "nginx:1.25"}
        return self.seed(
            "deployments",
            namespace,
            {
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {"containers": [{"name": c, "image": i} for c, i in containers.items()]},
                    },
                },
            },
        )

    def seed_service(
        self,
        name: str,
        namespace: str = DEFAULT_NAMESPACE,
        selector: dict[str, str] | None = None,
        port: int = 80,
    ) -> Obj:
        return self.seed(
            "services",
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "selector": selector or {"app": name},
                    "ports": [{"port": port, "protocol": "TCP", "targetPort": port}],
                },
            },
        )

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of the stored object, or None."""
        rt = resource_type(kind)
        with self._lock:
            obj = self._store[rt.plural].get((namespace or "" if rt.namespaced else "", name))
            return copy.deepcopy(obj) if obj else None

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Copies of all stored objects of ``kind`` (in ``namespace``, or everywhere)."""
        rt = resource_type(kind)
        with self._lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self._store[rt.plural].items())
                if namespace is None or ns == namespace
            ]

    def requests_for(self, method: str | None = None, path_contains: str = "") -> list[KubeRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and path_contains in r.path
            ]

    def mutations(self) -> list[KubeRequest]:
        """Recorded POST/PUT/PATCH/DELETE requests (dry-run ones included, see ``.dry_run``)."""
        with self._lock:
            return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    # ------------------------------------------------------------------ store primitives (lock held)
    def _key(self, rt: ResourceType, ns: str, name: str) -> tuple[str, str]:
        return (ns if rt.namespaced else "", name)

    def _existing(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self._store[rt.plural].get(self._key(rt, ns, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found')
        return obj

    def _write(self, rt: ResourceType, ns: str, obj: Obj, event: str) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._store[rt.plural][self._key(rt, ns, obj["metadata"]["name"])] = obj
        self._events.append((self._rv, event, rt.plural, ns, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _delete_obj(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self._store[rt.plural].pop(self._key(rt, ns, name))
        self._rv += 1
        self._events.append((self._rv, "DELETED", rt.plural, ns, copy.deepcopy(obj)))
        for child_rt in RESOURCES:  # cascade (garbage collection of owned objects)
            for (cns, cname), child in list(self._store[child_rt.plural].items()):
                if owned_by(child, obj):
                    self._delete_obj(child_rt, cns, cname)
        return obj

    def _create(self, rt: ResourceType, ns: str, obj: Obj, dry_run: bool) -> Obj:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "body must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{rt.kind}: metadata.name: Required value")
            meta["name"] = meta["generateName"] + rand_suffix()
        if self._key(rt, ns, meta["name"]) in self._store[rt.plural]:
            raise ApiError(409, "AlreadyExists", f'{rt.qualified} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.namespaced:
            meta["namespace"] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        self._defaults(rt, obj)
        if dry_run:
            return obj
        self._write(rt, ns, obj, "ADDED")
        return self._reconcile(rt, ns, meta["name"])

    def _update(self, rt: ResourceType, ns: str, name: str, body: Any, dry_run: bool, sub: str = "") -> Obj:
        old = self._existing(rt, ns, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "body must be a JSON object")
        new: Obj = body
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(
                400, "BadRequest", f"the name of the object ({meta['name']}) does not match the URL ({name})"
            )
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": '
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if sub == "status":
            new = {**copy.deepcopy(old), "status": new.get("status", {})}
        elif "status" in rt.subresources:
            new["status"] = copy.deepcopy(old.get("status", {}))
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        for key in ("uid", "creationTimestamp", "namespace", "generation"):
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
        new["metadata"]["name"] = name
        self._defaults(rt, new)
        if json.dumps(new.get("spec"), sort_keys=True) != json.dumps(old.get("spec"), sort_keys=True):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if dry_run:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new
        self._write(rt, ns, new, "MODIFIED")
        return self._reconcile(rt, ns, name)

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        spec = (
            obj.setdefault("spec", {})
            if rt.plural in ("deployments", "replicasets", "services", "pods")
            else None
        )
        if rt.plural in ("deployments", "replicasets") and spec is not None:
            spec.setdefault("replicas", 1)
            spec.setdefault(
                "selector",
                {"matchLabels": dict(spec.get("template", {}).get("metadata", {}).get("labels", {}))},
            )
        if rt.plural == "deployments" and spec is not None:
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        if rt.plural == "services" and spec is not None:
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("clusterIP", f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}")
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if rt.plural == "pods" and not obj.get("status"):
            obj["status"] = self._pod_status(obj)
        if rt.plural == "namespaces":
            obj.setdefault("status", {"phase": "Active"})

    @staticmethod
    def _pod_status(pod: Obj) -> Obj:
        containers = pod.get("spec", {}).get("containers", [])
        return {
            "phase": "Running",
            "podIP": f"10.244.0.{random.randint(2, 254)}",
            "startTime": now(),
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now()}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now()}},
                }
                for c in containers
            ],
        }

    # ------------------------------------------------------------------ the fake controllers
    def _reconcile(self, rt: ResourceType, ns: str, name: str) -> Obj:
        if rt.plural == "deployments":
            self._reconcile_deployment(ns, name)
        elif rt.plural == "replicasets":
            self._reconcile_replicaset(ns, name)
        return copy.deepcopy(self._store[rt.plural][self._key(rt, ns, name)])

    def _reconcile_deployment(self, ns: str, name: str) -> None:
        rs_rt = BY_PATH[("apps/v1", "replicasets")]
        dep = copy.deepcopy(self._store["deployments"][(ns, name)])
        spec, replicas = dep["spec"], dep["spec"].get("replicas", 1)
        template = spec.get("template", {})
        h = template_hash(template)
        owned = [
            copy.deepcopy(rs)
            for (rns, _), rs in self._store["replicasets"].items()
            if rns == ns and owned_by(rs, dep)
        ]

        def rev(rs: Obj) -> int:
            return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))

        max_rev = max((rev(rs) for rs in owned), default=0)
        current = next((rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL) == h), None)
        if current is None:
            labels = {**template.get("metadata", {}).get("labels", {}), HASH_LABEL: h}
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = dict(labels)
            selector = copy.deepcopy(spec.get("selector", {}))
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            current = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{h}",
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {
                        REVISION: str(max_rev + 1),
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                    },
                    "ownerReferences": [owner_ref(dep)],
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                    "generation": 1,
                },
                "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
            }
            owned.append(current)
        elif rev(current) != max_rev:  # rolling back to an old template re-uses its ReplicaSet
            current["metadata"]["annotations"][REVISION] = str(max_rev + 1)
        for rs in owned:
            want = replicas if rs is current else 0
            if rs["spec"].get("replicas") != want:
                rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
            rs["spec"]["replicas"] = want
            rs["status"] = {
                "replicas": want,
                "fullyLabeledReplicas": want,
                "readyReplicas": want,
                "availableReplicas": want,
                "observedGeneration": rs["metadata"]["generation"],
            }
            stored = self._store["replicasets"].get((ns, rs["metadata"]["name"]))
            if stored is None or not same_object(stored, rs):
                self._write(rs_rt, ns, rs, "ADDED" if stored is None else "MODIFIED")
            self._reconcile_replicaset(ns, rs["metadata"]["name"])
        new_dep = copy.deepcopy(dep)
        new_dep["metadata"].setdefault("annotations", {})[REVISION] = current["metadata"]["annotations"][
            REVISION
        ]
        if self.auto_rollout:
            gen = dep["metadata"]["generation"]
            new_dep["status"] = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                        "lastUpdateTime": now(),
                        "lastTransitionTime": now(),
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.',
                        "lastUpdateTime": now(),
                        "lastTransitionTime": now(),
                    },
                ],
            }
            if replicas == 0:
                for k in ("readyReplicas", "availableReplicas", "updatedReplicas"):
                    new_dep["status"].pop(k)
        if new_dep != dep:
            self._write(BY_PATH[("apps/v1", "deployments")], ns, new_dep, "MODIFIED")

    def _reconcile_replicaset(self, ns: str, name: str) -> None:
        if not self.simulate_pods:
            return
        pod_rt = BY_PATH[("v1", "pods")]
        rs = self._store["replicasets"][(ns, name)]
        pods = sorted(
            (p for (pns, _), p in self._store["pods"].items() if pns == ns and owned_by(p, rs)),
            key=lambda p: p["metadata"]["creationTimestamp"],
        )
        want = rs["spec"].get("replicas", 1)
        for pod in pods[want:]:
            self._delete_obj(pod_rt, ns, pod["metadata"]["name"])
        for _ in range(want - len(pods)):
            tpl = rs["spec"].get("template", {})
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-{rand_suffix()}",
                    "namespace": ns,
                    "labels": dict(tpl.get("metadata", {}).get("labels", {})),
                    "annotations": dict(tpl.get("metadata", {}).get("annotations", {})),
                    "ownerReferences": [owner_ref(rs)],
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                    "generation": 1,
                },
                "spec": {**copy.deepcopy(tpl.get("spec", {})), "nodeName": "node1"},
            }
            pod["status"] = self._pod_status(pod)
            self._write(pod_rt, ns, pod, "ADDED")

    # ------------------------------------------------------------------ HTTP
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        req = KubeRequest(
            h.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in h.headers.items()},
            read_request_body(h),
        )
        with self._lock:
            self.requests.append(req)
        try:
            if req.method == "GET" and req.query.get("watch", [""])[0] in ("true", "1"):
                self._watch(h, req)
                return
            with self._lock:
                code, body = self._route(req)
        except ApiError as exc:
            code, body = exc.code, exc.status()
        except PatchError as exc:
            code, body = 422, ApiError(422, "Invalid", str(exc)).status()
        except ValueError as exc:  # undecodable JSON body
            code, body = 400, ApiError(400, "BadRequest", f"cannot decode request body: {exc}").status()
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _parse(self, path: str) -> tuple[ResourceType, str | None, str | None, str]:
        """-> (resource type, namespace or None for all/cluster, name, subresource)."""
        m = re.fullmatch(r"/api/v1/(.*)", path) or re.fullmatch(r"/apis/([^/]+/v1)/(.*)", path)
        if not m:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        api_version, rest = ("v1", m.group(1)) if path.startswith("/api/") else (m.group(1), m.group(2))
        segs = [s for s in rest.split("/") if s]
        ns: str | None = None
        if len(segs) >= 3 and segs[0] == "namespaces" and (api_version, segs[2]) in BY_PATH:
            ns, segs = segs[1], segs[2:]
        rt = BY_PATH.get((api_version, segs[0])) if segs else None
        if rt is None or len(segs) > 3 or (len(segs) == 3 and segs[2] not in rt.subresources):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if rt.namespaced and len(segs) > 1 and ns is None:
            raise ApiError(404, "NotFound", f"namespace required for {rt.plural} ({path})")
        return rt, ns, segs[1] if len(segs) > 1 else None, segs[2] if len(segs) > 2 else ""

    def _route(self, req: KubeRequest) -> tuple[int, Obj]:
        if req.method == "GET" and (doc := discovery(req.path, f"{self.host}:{self.port}")) is not None:
            return 200, doc
        if req.method == "GET" and (doc := openapi_v3(req.path)) is not None:
            return 200, doc
        if req.path in ("/healthz", "/readyz", "/livez"):
            return 200, {"status": "ok"}
        if req.method in ("POST", "PUT", "PATCH") and "protobuf" in req.content_type:
            raise ApiError(
                415, "UnsupportedMediaType", "the test API server only understands JSON bodies, not protobuf"
            )
        rt, ns, name, sub = self._parse(req.path)
        nskey = ns or ""
        dry = req.dry_run
        body = req.json() if req.body else None
        if name is None:
            if req.method == "GET":
                return 200, self._list(rt, ns, req)
            if req.method == "POST" and (ns is not None or not rt.namespaced):
                return 201, self._create(rt, nskey, body or {}, dry)
            raise ApiError(405, "MethodNotAllowed", f"{req.method} not supported on collection {req.path}")
        if req.method == "GET":
            obj = copy.deepcopy(self._existing(rt, nskey, name))
            if sub == "scale":
                return 200, self._scale(obj)
            return 200, self._maybetable(rt, [obj], req, single=True)
        if req.method == "DELETE":
            obj = self._existing(rt, nskey, name)
            if not dry:
                self._delete_obj(rt, nskey, name)
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": rt.group,
                    "kind": rt.plural,
                    "uid": obj["metadata"]["uid"],
                },
            }
        if req.method in ("PUT", "PATCH"):
            old = copy.deepcopy(self._existing(rt, nskey, name))
            current = self._scale(old) if sub == "scale" else old
            new: Any = body if req.method == "PUT" else apply_patch(req.content_type, current, body)
            if sub == "scale":
                replicas = (new or {}).get("spec", {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    raise ApiError(422, "Invalid", f"Scale.spec.replicas: Invalid value: {replicas!r}")
                scale_rv = (new or {}).get("metadata", {}).get("resourceVersion")
                new = {
                    **old,
                    "metadata": {**old["metadata"], "resourceVersion": scale_rv},
                    "spec": {**old["spec"], "replicas": replicas},
                }
                return 200, self._scale(self._update(rt, nskey, name, new, dry))
            return 200, self._update(rt, nskey, name, new, dry, sub)
        raise ApiError(405, "MethodNotAllowed", f"{req.method} not supported on {req.path}")

    def _scale(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        replicas = obj.get("spec", {}).get("replicas", 1)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": replicas},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", replicas),
                "selector": selector_string(obj.get("spec", {}).get("selector", {}).get("matchLabels", {})),
            },
        }

    def _matching(self, rt: ResourceType, ns: str | None, req: KubeRequest) -> list[Obj]:
        labels, fields = req.query.get("labelSelector", [""])[0], req.query.get("fieldSelector", [""])[0]
        return [
            copy.deepcopy(o)
            for (ons, _), o in sorted(self._store[rt.plural].items())
            if (ns is None or ons == ns)
            and label_match(o["metadata"].get("labels", {}), labels)
            and field_match(o, fields)
        ]

    def _list(self, rt: ResourceType, ns: str | None, req: KubeRequest) -> Obj:
        return self._maybetable(rt, self._matching(rt, ns, req), req, single=False)

    def _maybetable(self, rt: ResourceType, items: list[Obj], req: KubeRequest, single: bool) -> Obj:
        if "as=Table" not in req.headers.get("accept", ""):
            if single:
                return items[0]
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        columns, rows = table(rt, items)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": [
                {
                    "name": c,
                    "type": "string",
                    "format": "name" if c == "Name" else "",
                    "description": "",
                    "priority": 0,
                }
                for c in columns
            ],
            "rows": [{"cells": cells, "object": obj} for cells, obj in zip(rows, items, strict=True)],
        }

    def _watch(self, h: BaseHTTPRequestHandler, req: KubeRequest) -> None:
        with self._lock:
            rt, ns, _, _ = self._parse(req.path)
            rv_param = req.query.get("resourceVersion", [""])[0]
            since = int(rv_param) if rv_param.isdigit() and rv_param != "0" else self._rv
            initial = [] if rv_param.isdigit() and rv_param != "0" else self._matching(rt, ns, req)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

        def send(event: str, obj: Obj) -> None:
            data = json.dumps({"type": event, "object": obj}).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        timeout = float(req.query.get("timeoutSeconds", ["60"])[0] or 60)
        deadline = time.monotonic() + min(timeout, 300)
        labels, fields = req.query.get("labelSelector", [""])[0], req.query.get("fieldSelector", [""])[0]
        try:
            for obj in initial:
                send("ADDED", obj)
            if req.query.get("sendInitialEvents", [""])[0] == "true":  # WatchList (kubectl >= 1.35)
                end = {"resourceVersion": str(since), "annotations": {"k8s.io/initial-events-end": "true"}}
                send("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": end})
            while time.monotonic() < deadline and not self._stopping.is_set():
                with self._lock:
                    new = [
                        (rv, ev, o)
                        for rv, ev, plural, ens, o in self._events
                        if rv > since and plural == rt.plural and (ns is None or ens == ns)
                    ]
                for rv, ev, obj in new:
                    since = rv
                    if label_match(obj["metadata"].get("labels", {}), labels) and field_match(obj, fields):
                        send(ev, obj)
                if _client_gone(h.connection):
                    return
            h.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


def _client_gone(conn: socket.socket, wait: float = 0.05) -> bool:
    readable, _, _ = select.select([conn], [], [], wait)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _make_handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            api._handle(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    return Handler


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeApi]:
    api = KubeApi()
    if not Path(api.kubectl_bin).exists():
        raise ServerStartError("kubectl not found on PATH (scripts/test installs it)")
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kube(kube_api: KubeApi) -> KubeApi:
    kube_api.reset()
    return kube_api
