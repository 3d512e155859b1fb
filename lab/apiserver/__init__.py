"""The lab's Kubernetes API server: a store of objects, its HTTP API, and the EndpointSlice controller.

It answers like kube-apiserver v1.36.2 where clients can tell (see tests/unit/lab/test_apiserver_real_shapes.py).
Typical wiring in the lab daemon::

    store = Store()
    controller = EndpointSliceController(store)
    controller.start()
    server = ApiServer(store, token, tls=ServingCertificate.from_files(cert, key))  # from the lab's CA
    url = server.start()                    # https://127.0.0.1:PORT
    write_kubeconfig(path, url, token, ca_pem=ca_pem)
    ...
    server.stop(); controller.stop()
"""

from lab.apiserver.authn import PolicyRule, User, rules_of
from lab.apiserver.endpointslices import EndpointSliceController, slice_name
from lab.apiserver.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from lab.apiserver.kubeconfig import LAB_CONTEXT, kubeconfig_document, write_kubeconfig
from lab.apiserver.resources import RESOURCE_TYPES, ResourceType
from lab.apiserver.server import ApiServer
from lab.apiserver.store import ObjectList, Preconditions, Store, Subscription, WatchEvent
from lab.apiserver.tls import ServingCertificate

__all__ = [
    "LAB_CONTEXT",
    "RESOURCE_TYPES",
    "AlreadyExists",
    "ApiError",
    "ApiServer",
    "BadRequest",
    "Conflict",
    "EndpointSliceController",
    "Expired",
    "Invalid",
    "MethodNotAllowed",
    "NotFound",
    "ObjectList",
    "PolicyRule",
    "Preconditions",
    "ResourceType",
    "ServingCertificate",
    "Store",
    "Subscription",
    "Unauthorized",
    "UnsupportedMediaType",
    "User",
    "WatchEvent",
    "kubeconfig_document",
    "rules_of",
    "slice_name",
    "write_kubeconfig",
]
