"""The lab's Kubernetes API server over HTTP: real paths, verbs, Status errors, chunked watches.

`ApiServer(store, token)` serves a `Store` on 127.0.0.1 to the official `kubernetes` client, kubectl
and plain HTTP clients. Requests need `Authorization: Bearer <token>`: a wrong credential is 401, and
a request without one is `system:anonymous` (403 except for /healthz, /livez, /readyz and /version),
as kube-apiserver answers them. Each connection gets a
thread (stdlib `ThreadingHTTPServer`), so a watch never blocks other requests; `stop()` ends open
watches, closes idle keep-alive connections and joins every thread.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lab.apiserver import discovery, tables
from lab.apiserver.authn import ANONYMOUS, User, anonymous_allowed, forbidden, request_info
from lab.apiserver.errors import (
    ApiError,
    BadRequest,
    Expired,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PageNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from lab.apiserver.metrics import RequestCounter, request_scope, request_verb
from lab.apiserver.resources import PODS, SERVICES, ResourceType, resource_at
from lab.apiserver.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from lab.apiserver.store import Preconditions, Store, WatchEvent
from lab.apiserver.tls import ServingCertificate

log = logging.getLogger(__name__)
ADMIN = User("kubereach-lab-admin")
"""Who the lab's own token is: allowed everything, like a static-token cluster admin."""

MAX_BODY_BYTES = 3 * 1024 * 1024
DEFAULT_WATCH_TIMEOUT_SECONDS = 1800.0
TRUE_VALUES = ("1", "true", "True")
_RETURNS_DELETED_OBJECT = (PODS, SERVICES)


class ApiServer:
    """An HTTP Kubernetes API over a `Store`; `start()` binds and serves, `stop()` ends everything."""

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        bookmark_interval: float = 10.0,
        tls: ServingCertificate | None = None,
        users: Mapping[str, User] | None = None,
    ) -> None:
        """Serve `store`; `token` is the cluster admin's bearer token.

        `bookmark_interval`: seconds between BOOKMARK events on watches that allow them.
        `tls`: serve HTTPS with this certificate (kubectl sends tokens only over TLS); None: plain HTTP.
        `users`: more bearer tokens, each with the identity and RBAC rules it is authorized by.
        """
        if not token:
            raise ValueError("the API server needs a non-empty bearer token")
        self.store = store
        self._token = token.encode()
        self._users = [(t.encode(), u) for t, u in (users or {}).items() if t]
        self.bookmark_interval = bookmark_interval
        self.requests = RequestCounter()
        """``apiserver_request_total``: every resource request served (also at ``/metrics``)."""
        self.tls = tls
        self.stopping = threading.Event()
        self._httpd: _LabHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL (http://127.0.0.1:PORT) while started."""
        if self._url is None:
            raise RuntimeError("the API server is not started; call start() first")
        return self._url

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind (port 0: a free port from the kernel), serve on a background thread, return the URL."""
        if self._httpd is not None:
            raise RuntimeError("the API server is already started")
        self.stopping.clear()
        context = self.tls.server_context() if self.tls is not None else None
        httpd = _LabHTTPServer((host, port), _ApiRequestHandler, self, context)
        self._httpd = httpd
        bound_host, bound_port = httpd.server_address[:2]
        scheme = "https" if context is not None else "http"
        self._url = f"{scheme}://{bound_host!s}:{bound_port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"apiserver-{bound_port}", daemon=True
        )
        self._thread.start()
        return self._url

    def stop(self) -> None:
        """End watches, close connections, stop serving and join every server thread (idempotent)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        self.store.wake_watchers()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = None
        self._thread = None
        self._url = None

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def token_matches(self, header: str | None) -> bool:
        """Whether an Authorization header carries this server's admin bearer token (constant-time compare)."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self._token)

    def user_for(self, header: str) -> User | None:
        """The identity an Authorization header proves (None: no known credential)."""
        if not header.startswith("Bearer "):
            return None
        given = header[len("Bearer ") :].strip().encode()
        if hmac.compare_digest(given, self._token):
            return ADMIN
        found = None
        for token, user in self._users:
            if hmac.compare_digest(given, token):
                found = user
        return found


class _LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        api: ApiServer,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.api = api
        self.tls_context = tls_context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        if self.tls_context is None:
            return connection, address
        # The handshake happens on the handler's thread, so a slow client cannot stall accept().
        return self.tls_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that breaks the connection (or a TLS handshake) is not a server failure.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("connection already closed at shutdown")


class _Request:
    """One parsed API request path."""

    def __init__(self, resource: ResourceType, namespace: str | None, name: str | None, sub: str | None) -> None:
        self.resource = resource
        self.namespace = namespace
        self.name = name
        self.subresource = sub


class _ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _LabHTTPServer
    server_version = "kubereach-lab-apiserver"
    disable_nagle_algorithm = True

    # --------------------------------------------------------------------------- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise BadRequest("malformed chunked request body") from exc
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BadRequest("request body is larger than 3 MiB")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest("request body is larger than 3 MiB")
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # ---------------------------------------------------------------------------- routing

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except (ApiError, OSError, ValueError) as exc:
            self.close_connection = True
            if isinstance(exc, ApiError):
                self._send_json(exc.code, exc.to_status())
            return
        try:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            segments = [unquote(s) for s in parts.path.split("/") if s]
            authorization = self.headers.get("Authorization")
            if authorization is None or not authorization.strip():
                # No credentials: kube-apiserver's anonymous user, who may only read the public paths.
                if not anonymous_allowed(segments):
                    raise forbidden(ANONYMOUS, request_info(method, segments, query))
            else:
                user = self.api.user_for(authorization)
                if user is None:
                    raise Unauthorized("Unauthorized")
                if user.rules is not None and not anonymous_allowed(segments):
                    info = request_info(method, segments, query)
                    if not user.allows(info):
                        raise forbidden(user.name, info)
            self._route(method, segments, query, body)
        except PageNotFound:
            self._send_text(404, "404 page not found\n")
        except ApiError as exc:
            self._send_json(exc.code, exc.to_status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, segments: list[str], query: dict[str, str], body: bytes) -> None:
        if not segments:
            self._send_json(200, discovery.root_paths())
            return
        head = segments[0]
        if len(segments) == 1 and head in ("healthz", "readyz", "livez"):
            self._send_text(200, "ok")
            return
        if segments == ["metrics"]:
            self._send_text(200, self.api.requests.exposition())
            return
        if segments == ["version"]:
            self._send_json(200, discovery.version_info())
            return
        if segments[:2] == ["openapi", "v3"]:
            rest_path = segments[2:]
            if not rest_path:
                self._send_json(200, discovery.openapi_v3_root())
                return
            if rest_path[0] == "api" and len(rest_path) == 2:
                document = discovery.openapi_v3_document("", rest_path[1])
            elif rest_path[0] == "apis" and len(rest_path) == 3:
                document = discovery.openapi_v3_document(rest_path[1], rest_path[2])
            else:
                document = None
            if document is None:
                raise PageNotFound("404 page not found")
            self._send_json(200, document)
            return
        if len(segments) == 1 and head in ("api", "apis") and discovery.wants_aggregated(self.headers.get("Accept")):
            self._send_json(200, discovery.aggregated_discovery(core=head == "api"), discovery.AGGREGATED_MEDIA_TYPE)
            return
        if head == "api":
            if len(segments) == 1:
                host, port = self.server.server_address[:2]
                self._send_json(200, discovery.api_versions(f"{host!s}:{port}"))
                return
            group, version, rest = "", segments[1], segments[2:]
        elif head == "apis":
            if len(segments) == 1:
                self._send_json(200, discovery.api_group_list())
                return
            if len(segments) == 2:
                document = discovery.api_group(segments[1])
                if document is None:
                    raise PageNotFound("404 page not found")
                self._send_json(200, document)
                return
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise PageNotFound("404 page not found")
        resources = discovery.api_resource_list(group, version)
        if resources is None:
            # No group/version serves this path: the real server's mux answers plain text.
            raise PageNotFound("404 page not found")
        if not rest:
            self._send_json(200, resources)
            return
        if rest[0] == "watch":
            query["watch"] = "true"
            rest = rest[1:]
        request = self._parse_resource_path(group, version, rest)
        code = 201 if method == "POST" else 200
        try:
            self._serve(method, request, query, body)
        except ApiError as exc:
            code = exc.code
            raise
        finally:
            self.api.requests.count(
                request_verb(method, request.name, query.get("watch") in TRUE_VALUES),
                group,
                version,
                request.resource.plural,
                request.subresource or "",
                request_scope(request.namespace, request.name),
                code,
            )

    @staticmethod
    def _parse_resource_path(group: str, version: str, rest: list[str]) -> _Request:
        namespace: str | None = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise NotFound("the server could not find the requested resource", details={})
        resource = resource_at(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and not resource.namespaced:
            raise NotFound("the server could not find the requested resource", details={})
        if name is not None and resource.namespaced and namespace is None:
            raise NotFound("the server could not find the requested resource", details={})
        if sub is not None and not (sub == "status" and resource.has_status):
            raise NotFound("the server could not find the requested resource", details={})
        return _Request(resource, namespace, name, sub)

    # ------------------------------------------------------------------------------ verbs

    def _serve(self, method: str, req: _Request, query: dict[str, str], body: bytes) -> None:
        store = self.api.store
        rtype = req.resource
        if query.get("dryRun") and method in ("POST", "PUT", "PATCH", "DELETE"):
            raise BadRequest("dryRun is not supported by the lab API server; send the request without it")
        if req.name is None:
            if method == "GET":
                labels = parse_label_selector(query.get("labelSelector"))
                fields = parse_field_selector(query.get("fieldSelector"), rtype.kind)
                if query.get("watch") in TRUE_VALUES:
                    self._watch(req, labels, fields, query)
                else:
                    self._list(req, labels, fields, query)
                return
            if method == "POST":
                if rtype.namespaced and req.namespace is None:
                    raise MethodNotAllowed(f"create {rtype.plural} under /namespaces/<namespace>/{rtype.plural}")
                obj = self._object_body(body, rtype)
                self._send_json(201, store.create(obj, namespace=req.namespace))
                return
            if method == "DELETE" and rtype.delete_collection:
                self._delete_collection(req, query, body)
                return
            raise MethodNotAllowed(f"{method} is not supported on a collection of {rtype.plural}")
        name = req.name
        if method == "GET":
            obj = store.get(rtype, name, req.namespace)
            accept = self.headers.get("Accept")
            if req.subresource is None and tables.wants(accept, "Table"):
                self._send_json(200, tables.table(rtype, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}))
            elif req.subresource is None and tables.wants(accept, "PartialObjectMetadata"):
                self._send_json(200, tables.partial_metadata(obj))
            else:
                self._send_json(200, obj)
        elif method == "PUT":
            obj = self._object_body(body, rtype)
            given_name = (obj.get("metadata") or {}).get("name")
            if given_name != name:
                raise BadRequest(f"the name of the object ({given_name}) does not match the name on the URL ({name})")
            keep_status = req.subresource is None and rtype.has_status
            result = store.replace(obj, namespace=req.namespace, subresource=req.subresource, keep_status=keep_status)
            self._send_json(200, result)
        elif method == "PATCH":
            content_type = self.headers.get("Content-Type") or ""
            patch = self._json(body)
            keep_status = req.subresource is None and rtype.has_status
            result = store.patch(
                rtype,
                name,
                patch,
                req.namespace,
                patch_type=content_type,
                subresource=req.subresource,
                keep_status=keep_status,
            )
            self._send_json(200, result)
        elif method == "DELETE":
            if req.subresource is not None:
                raise MethodNotAllowed(f"DELETE is not supported on {rtype.plural}/{req.subresource}")
            options = self._json(body) if body.strip() else {}
            pre = options.get("preconditions") if isinstance(options, dict) else None
            preconditions = None
            if isinstance(pre, dict):
                preconditions = Preconditions(uid=pre.get("uid"), resource_version=pre.get("resourceVersion"))
            grace = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
            if query.get("gracePeriodSeconds"):
                grace = query["gracePeriodSeconds"]
            if grace is not None:
                try:
                    grace = int(grace)
                except (TypeError, ValueError) as exc:
                    raise BadRequest(f"gracePeriodSeconds {grace!r} is not a number") from exc
            deleted = store.delete(rtype, name, req.namespace, preconditions=preconditions, grace_period_seconds=grace)
            if rtype in _RETURNS_DELETED_OBJECT or deleted["metadata"].get("deletionTimestamp"):
                self._send_json(200, deleted)
            else:
                details: dict[str, Any] = {"name": name, "kind": rtype.plural, "uid": deleted["metadata"]["uid"]}
                if rtype.group:
                    details["group"] = rtype.group
                self._send_json(
                    200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
                )
        else:
            raise MethodNotAllowed(f"{method} is not supported on {rtype.plural}")

    def _delete_collection(self, req: _Request, query: dict[str, str], body: bytes) -> None:
        """deletecollection: delete (pods: gracefully) every selected object; answer the list of them."""
        rtype, store = req.resource, self.api.store
        options = self._json(body) if body.strip() else {}
        grace = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
        listed = store.list(
            rtype,
            req.namespace,
            label_selector=parse_label_selector(query.get("labelSelector")),
            field_selector=parse_field_selector(query.get("fieldSelector"), rtype.kind),
        )
        deleted = []
        for obj in listed.items:
            meta = obj["metadata"]
            try:
                deleted.append(
                    store.delete(
                        rtype, meta["name"], meta.get("namespace"), grace_period_seconds=grace if isinstance(grace, int) else None
                    )
                )
            except NotFound:
                continue
        self._send_json(
            200,
            {
                "kind": rtype.list_kind,
                "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": store.resource_version},
                "items": deleted,
            },
        )

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from exc

    def _object_body(self, body: bytes, rtype: ResourceType) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";", maxsplit=1)[0].strip()
        if content_type not in ("application/json", "*/*"):
            raise UnsupportedMediaType(f"the body must be application/json, not {content_type}")
        obj = self._json(body)
        if not isinstance(obj, dict):
            raise BadRequest(f"the request body must be a {rtype.kind} object")
        obj.setdefault("apiVersion", rtype.api_version)
        obj.setdefault("kind", rtype.kind)
        if obj["apiVersion"] != rtype.api_version or obj["kind"] != rtype.kind:
            raise BadRequest(
                f"the body is a {obj['kind']} ({obj['apiVersion']}) but the URL is for {rtype.kind} ({rtype.api_version})"
            )
        return obj

    def _list(self, req: _Request, labels: LabelSelector, fields: FieldSelector, query: dict[str, str]) -> None:
        rtype = req.resource
        limit: int | None = None
        if query.get("limit"):
            try:
                limit = int(query["limit"])
            except ValueError as exc:
                raise BadRequest(f"limit {query['limit']!r} is not a number") from exc
        listed = self.api.store.list(
            rtype,
            req.namespace,
            label_selector=labels,
            field_selector=fields,
            limit=limit,
            continue_token=query.get("continue") or None,
            resource_version=query.get("resourceVersion") or None,
            resource_version_match=query.get("resourceVersionMatch") or None,
        )
        metadata: dict[str, Any] = {"resourceVersion": listed.resource_version}
        if listed.continue_token:
            metadata["continue"] = listed.continue_token
            if listed.remaining_item_count is not None:
                metadata["remainingItemCount"] = listed.remaining_item_count
        accept = self.headers.get("Accept")
        if tables.wants(accept, "Table"):
            self._send_json(200, tables.table(rtype, listed.items, metadata))
            return
        if tables.wants(accept, "PartialObjectMetadataList"):
            self._send_json(200, tables.partial_metadata_list(listed.items, metadata))
            return
        # The real server leaves kind and apiVersion off list items (the list carries them).
        items = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in listed.items]
        self._send_json(200, {"kind": rtype.list_kind, "apiVersion": rtype.api_version, "metadata": metadata, "items": items})

    # ------------------------------------------------------------------------------ watch

    def _watch(self, req: _Request, labels: LabelSelector, fields: FieldSelector, query: dict[str, str]) -> None:
        rtype = req.resource
        rv_param = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents") in TRUE_VALUES
        bookmarks = query.get("allowWatchBookmarks") in TRUE_VALUES
        start_rv: int | None = None
        if rv_param not in ("", "0") and not send_initial:
            try:
                start_rv = int(rv_param)
            except ValueError as exc:
                # What kube-apiserver v1.36 answers (a 500 without a reason, from strconv.ParseUint).
                raise InternalError(
                    f'resourceVersion: Invalid value: "{rv_param}": strconv.ParseUint: parsing "{rv_param}": invalid syntax'
                ) from exc
        timeout = DEFAULT_WATCH_TIMEOUT_SECONDS
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError as exc:
                raise BadRequest(f"timeoutSeconds {query['timeoutSeconds']!r} is not a number") from exc
        deadline = time.monotonic() + timeout
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Connection", "close")
        self.end_headers()
        watch = _WatchFilter(rtype, req.namespace, labels, fields)
        try:
            if start_rv is None:
                items, cursor = self.api.store.snapshot(rtype, req.namespace, labels, fields)
                for obj in items:
                    self._write_event({"type": "ADDED", "object": obj})
                if send_initial and bookmarks:
                    self._write_event(watch.bookmark(cursor, initial_events_end=True))
            else:
                cursor = start_rv
            self._stream(watch, cursor, deadline, bookmarks, timed="timeoutSeconds" in query)
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            log.debug("watch client went away")

    def _stream(self, watch: _WatchFilter, cursor: int, deadline: float, bookmarks: bool, *, timed: bool = False) -> None:
        store = self.api.store
        interval = self.api.bookmark_interval
        next_bookmark = time.monotonic() + interval
        if timed:
            # kube-apiserver's watch cache sends a bookmark shortly before a watch's timeout, so the
            # client can resume from the newest resourceVersion instead of its last event's.
            next_bookmark = min(next_bookmark, max(time.monotonic(), deadline - 1.0))
        while not self.api.stopping.is_set():
            now = time.monotonic()
            if now >= deadline or self._client_gone():
                return
            wait = min(deadline - now, 1.0, max(next_bookmark - now, 0.0) if bookmarks else 1.0)
            try:
                events, cursor = store.events_after(cursor, wait, self.api.stopping)
            except Expired as exc:
                self._write_event({"type": "ERROR", "object": exc.to_status()})
                return
            for event in events:
                wire = watch.translate(event)
                if wire is not None:
                    self._write_event(wire)
            if bookmarks and time.monotonic() >= next_bookmark:
                self._write_event(watch.bookmark(cursor))
                next_bookmark = time.monotonic() + interval

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        # Peek at the raw TCP stream (TLS sockets refuse MSG_PEEK): EOF means the client hung up.
        try:
            with socket.socket(fileno=os.dup(self.connection.fileno())) as raw:
                peeked: bytes = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return peeked == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _write_event(self, event: dict[str, Any]) -> None:
        self._write_chunk(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _WatchFilter:
    """Turns store events into the events one watch should see (scope and selectors applied)."""

    def __init__(self, resource: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> None:
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields

    def _selected(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, event: WatchEvent) -> dict[str, Any] | None:
        """The wire event for this watch, or None when the change is outside it.

        An object that starts matching the selectors arrives as ADDED, one that stops as DELETED,
        as the Kubernetes watch cache reports them.
        """
        if event.resource is not self.resource:
            return None
        now = self._selected(event.object)
        if event.type == "ADDED":
            return {"type": "ADDED", "object": event.object} if now else None
        if event.type == "DELETED":
            return {"type": "DELETED", "object": event.object} if now else None
        before = self._selected(event.old_object)
        if now and before:
            return {"type": "MODIFIED", "object": event.object}
        if now:
            return {"type": "ADDED", "object": event.object}
        if before and event.old_object is not None:
            gone = dict(event.old_object)
            gone["metadata"] = {**gone["metadata"], "resourceVersion": str(event.resource_version)}
            return {"type": "DELETED", "object": gone}
        return None

    def bookmark(self, resource_version: int, *, initial_events_end: bool = False) -> dict[str, Any]:
        """A BOOKMARK event at `resource_version`."""
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
        if initial_events_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        # The real server serialises an empty object of the kind, so spec and status come as {}.
        obj: dict[str, Any] = {"kind": self.resource.kind, "apiVersion": self.resource.api_version, "metadata": metadata}
        if self.resource.has_status:
            obj["spec"], obj["status"] = {}, {}
        return {"type": "BOOKMARK", "object": obj}
