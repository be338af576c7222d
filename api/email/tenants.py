"""SES tenants: where the account has them, each workspace sends as its own tenant.

SES then keeps each workspace's reputation and suppression list apart, and can pause one tenant
without the others. Whether the account has tenants is asked once a day (ListTenants; an
account or endpoint without them answers 404 or UnknownOperation, and mail goes without
`TenantName`). A workspace's tenant is created, and its sender identity associated, the first
time it sends from that identity: SES is called outside any transaction, and the result is
recorded (private.ses_tenants), so later batches find the tenant ready. SES's status of each
tenant (GetTenant) is read every few minutes for analytics.ses_tenants.
"""

import logging
from typing import Any

from api.core.db import Connection, Database
from api.email.ses import SesClient, SesError, tenant_resource_arn

log = logging.getLogger("growthbase.email")
# Tenants whose status is read from SES per run of the worker.
STATUS_READS_PER_RUN = 20


def refresh_tenancy(database: Database, ses: SesClient, account: str) -> bool:
    """Whether the account sends through tenants, asking SES when the stored answer is stale;
    reads the stalest tenants' status (GetTenant) as well. A failure asking keeps what was
    known (and without that, sends go without tenants)."""
    with database.as_service() as conn:
        row = conn.execute(
            "select private.ses_tenancy_stale(%s) as stale,"
            " private.ses_tenancy_supported(%s) as supported,"
            " array(select private.stale_ses_tenants(%s, %s)) as stale_tenants",
            (account, account, account, STATUS_READS_PER_RUN),
        ).fetchone()
    assert row is not None
    supported = bool(row["supported"])
    if row["stale"]:
        try:
            found = ses.tenants_supported()
        except SesError as failure:
            log.warning("ListTenants failed (%s): tenant support unchanged", failure)
        else:
            with database.as_service() as conn:
                saved = conn.execute(
                    "select private.save_ses_tenancy(%s, %s) as supported", (account, found)
                ).fetchone()
            supported = bool(saved and saved["supported"])
    if supported and row["stale_tenants"]:
        read_statuses(database, ses, account, list(row["stale_tenants"]))
    return supported


def read_statuses(database: Database, ses: SesClient, account: str, names: list[str]) -> None:
    answers: list[tuple[str, bool, str | None]] = []
    for name in names:
        try:
            tenant = ses.tenant(name)
        except SesError as failure:
            log.warning("GetTenant %s failed: %s", name, failure)
            continue
        answers.append((name, tenant is not None, tenant.sending_status if tenant else None))
    if not answers:
        return
    with database.as_service() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "select private.save_ses_tenant_status(%s, %s, %s, %s)",
            [(account, name, found, status) for name, found, status in answers],
        )


def add_tenants(conn: Connection, account: str, rows: list[dict[str, Any]]) -> None:
    """Sets each claimed row's `tenant` (what private.send_tenants knows of its workspace's
    tenant): one query per batch."""
    campaigns = list({row["campaign_id"] for row in rows})
    found = {
        tenant["campaign_id"]: dict(tenant)
        for tenant in conn.execute(
            "select * from private.send_tenants(%s, %s::uuid[])", (account, campaigns)
        )
    }
    for row in rows:
        row["tenant"] = found.get(row["campaign_id"])


def ready(tenant: dict[str, Any], configuration_set: str | None) -> bool:
    """Whether SES has the tenant with the identity (and configuration set) associated."""
    arn = tenant["tenant_arn"]
    if not arn:
        return False
    needed = {tenant_resource_arn(arn, "identity", tenant["identity"])}
    if configuration_set:
        needed.add(tenant_resource_arn(arn, "configuration-set", configuration_set))
    return needed <= set(tenant["resources"])


def prepare(
    database: Database, ses: SesClient, account: str, rows: list[dict[str, Any]]
) -> dict[str, SesError]:
    """Makes every claimed row's tenant ready in SES (creating and associating what is
    missing) and sets the row's `tenant_name`; answers, per workspace whose tenant SES would
    not make ready, the failure (its rows are not sent now)."""
    waiting: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        tenant = row.get("tenant")
        if tenant and not ready(tenant, ses.configuration_set):
            waiting[(tenant["tenant_name"], tenant["identity"])] = tenant
    failed: dict[str, SesError] = {}
    made: list[tuple[Any, ...]] = []
    for (name, identity), tenant in waiting.items():
        try:
            created, resources = ses.ensure_tenant(name, identity)
        except SesError as failure:
            log.warning("SES tenant %s for %s failed: %s", name, identity, failure)
            failed[str(tenant["workspace_id"])] = failure
            continue
        tenant["tenant_arn"] = created.arn
        tenant["resources"] = sorted({*tenant["resources"], *resources})
        made.append(
            (account, tenant["workspace_id"], name, created.arn, created.sending_status, resources)
        )
    if made:
        with database.as_service() as conn, conn.cursor() as cursor:
            cursor.executemany("select private.save_ses_tenant(%s, %s, %s, %s, %s, %s)", made)
    for row in rows:
        tenant = row.get("tenant")
        row["tenant_name"] = tenant["tenant_name"] if tenant else None
    return failed
