"""An SES account with tenants, in front of moto (whose SES v2 has no tenant API: 404).

The tenant operations as botocore's sesv2 model shapes them (REST JSON, POST with a JSON body):
CreateTenant `/v2/email/tenants` {TenantName, Tags?, SuppressionAttributes?} → {TenantName,
TenantId, TenantArn, CreatedTimestamp, Tags, SendingStatus, SuppressionAttributes}, or 400
AlreadyExistsException; GetTenant `/v2/email/tenants/get` {TenantName} → {Tenant: {...}}, or 404
NotFoundException; ListTenants `/v2/email/tenants/list` {PageSize?, NextToken?} → {Tenants:
[{TenantName, TenantId, TenantArn, CreatedTimestamp, SendingStatus}]};
CreateTenantResourceAssociation `/v2/email/tenants/resources` {TenantName, ResourceArn} → {},
404 for an unknown tenant, 400 AlreadyExistsException when already associated; DeleteTenant
`/v2/email/tenants/delete` {TenantName} → {} (its associations go with it), or 404
NotFoundException. While `api_gone` is set the account has lost the tenant API: every tenant
operation answers a bare 404, as moto's server does, and sends go on to moto. SendEmail with
`TenantName` succeeds only when the tenant exists and the sending identity (and the
configuration set, if named) is associated with it (400 BadRequestException otherwise); every
send's TenantName is recorded, then the send goes on to moto (throttling and outages as the
front plays them).
"""

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from tests.fakes.http_server import serve
from tests.fakes.ses_front import SEND_PATH, FrontHandler, SesFront
from tests.fakes.ses_server import REGION

ACCOUNT_ID = "123456789012"
ARN_PREFIX = f"arn:aws:ses:{REGION}:{ACCOUNT_ID}"


@dataclass
class SesTenants:
    """The account's tenants as the fake keeps them; read them while a test runs."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, set[str]] = field(default_factory=dict)
    # Every SendEmail that reached the fake: (TenantName or None, FromEmailAddress).
    sends: list[tuple[str | None, str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    # The tenant API gone from the account (see the module's docstring).
    api_gone: bool = False


def identity_arns(sender: str) -> set[str]:
    """The identities a From address may send under: the address, and its domain."""
    domain = sender.rsplit("@", 1)[-1]
    return {f"{ARN_PREFIX}:identity/{sender}", f"{ARN_PREFIX}:identity/{domain}"}


class TenantsHandler(FrontHandler):
    ses_account: ClassVar[SesTenants]

    def payload(self) -> dict[str, Any]:
        body = self.body()
        return dict(json.loads(body)) if body else {}

    def create_tenant(self, request: dict[str, Any]) -> None:
        name = request.get("TenantName")
        if not isinstance(name, str) or not name:
            self.error(400, "BadRequestException", "TenantName is required")
            return
        with self.ses_account.lock:
            if name in self.ses_account.tenants:
                self.error(400, "AlreadyExistsException", f"Tenant {name} already exists")
                return
            tenant_id = f"tn-{uuid.uuid4().hex[:20]}"
            tenant = {
                "TenantName": name,
                "TenantId": tenant_id,
                "TenantArn": f"{ARN_PREFIX}:tenant/{name}/{tenant_id}",
                "CreatedTimestamp": time.time(),
                "Tags": request.get("Tags", []),
                "SendingStatus": "ENABLED",
                "SuppressionAttributes": request.get(
                    "SuppressionAttributes", {"SuppressionScope": "ACCOUNT"}
                ),
            }
            self.ses_account.tenants[name] = tenant
            self.ses_account.resources[name] = set()
        self.reply_json(200, tenant)

    def known(self, name: Any) -> dict[str, Any] | None:
        with self.ses_account.lock:
            found = self.ses_account.tenants.get(name) if isinstance(name, str) else None
        if found is None:
            self.error(404, "NotFoundException", f"Tenant {name} does not exist")
        return found

    def get_tenant(self, request: dict[str, Any]) -> None:
        tenant = self.known(request.get("TenantName"))
        if tenant is not None:
            self.reply_json(200, {"Tenant": tenant})

    def list_tenants(self) -> None:
        with self.ses_account.lock:
            tenants = [
                {key: tenant[key] for key in ("TenantName", "TenantId", "TenantArn")}
                for tenant in self.ses_account.tenants.values()
            ]
        self.reply_json(200, {"Tenants": tenants})

    def associate(self, request: dict[str, Any]) -> None:
        name = request.get("TenantName")
        resource = request.get("ResourceArn")
        if self.known(name) is None:
            return
        if not isinstance(resource, str) or not resource.startswith(f"{ARN_PREFIX}:"):
            self.error(400, "BadRequestException", "ResourceArn is not a resource of this account")
            return
        with self.ses_account.lock:
            associated = self.ses_account.resources[str(name)]
            if resource in associated:
                self.error(400, "AlreadyExistsException", "The resource is already associated")
                return
            associated.add(resource)
        self.reply_json(200, {})

    def delete_tenant(self, request: dict[str, Any]) -> None:
        name = request.get("TenantName")
        if self.known(name) is None:
            return
        with self.ses_account.lock:
            self.ses_account.tenants.pop(str(name), None)
            self.ses_account.resources.pop(str(name), None)
        self.reply_json(200, {})

    def send_as_tenant(self, body: bytes) -> None:
        request = json.loads(body)
        name = request.get("TenantName")
        sender = str(request.get("FromEmailAddress", ""))
        with self.ses_account.lock:
            self.ses_account.sends.append((name, sender))
            associated = self.ses_account.resources.get(name, set()) if name else set()
            unknown = name is not None and name not in self.ses_account.tenants
        config = request.get("ConfigurationSetName")
        if unknown:
            self.error(404, "NotFoundException", f"Tenant {name} does not exist")
        elif name and not identity_arns(sender) & associated:
            self.error(400, "BadRequestException", f"{sender} is not associated with {name}")
        elif name and config and f"{ARN_PREFIX}:configuration-set/{config}" not in associated:
            self.error(400, "BadRequestException", f"{config} is not associated with {name}")
        else:
            self.send(body)

    def do_POST(self) -> None:
        routes = {
            "/v2/email/tenants": self.create_tenant,
            "/v2/email/tenants/get": self.get_tenant,
            "/v2/email/tenants/resources": self.associate,
            "/v2/email/tenants/delete": self.delete_tenant,
        }
        with self.ses_account.lock:
            self.ses_account.calls[self.path] += 1
            gone = self.ses_account.api_gone
        if gone and self.path.startswith("/v2/email/tenants"):
            self.payload()
            self.reply(404, b"")
        elif gone and self.path == SEND_PATH:
            body = self.body()
            request = json.loads(body)
            with self.ses_account.lock:
                self.ses_account.sends.append(
                    (request.get("TenantName"), str(request.get("FromEmailAddress", "")))
                )
            self.send(body)
        elif self.path in routes:
            routes[self.path](self.payload())
        elif self.path == "/v2/email/tenants/list":
            self.payload()
            self.list_tenants()
        elif self.path == SEND_PATH:
            self.send_as_tenant(self.body())
        else:
            self.forward()


@contextmanager
def ses_with_tenants(moto_endpoint: str, account: SesTenants) -> Iterator[str]:
    """Serves an SES account with tenants before moto; yields the endpoint to give boto3."""
    with httpx.Client(timeout=30) as client:
        handler: Any = type(
            "BoundTenantsHandler",
            (TenantsHandler,),
            {
                "front": SesFront(max_send_rate=10_000),
                "moto": moto_endpoint,
                "client": client,
                "ses_account": account,
            },
        )
        with serve(handler) as url:
            yield url
