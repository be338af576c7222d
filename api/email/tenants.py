"""SES tenants: where the account has them, each workspace sends as its own tenant.

SES then keeps each workspace's reputation and suppression list apart, and can pause one tenant
without the others. Whether the account has tenants is asked once a day (ListTenants; an
account or endpoint without them answers 404 or UnknownOperation, and mail goes without
`TenantName`). A workspace's tenant is created, and its sender identity associated, the first
time it sends from that identity: SES is called outside any transaction, and the result is
recorded (private.ses_tenants), so later batches find the tenant ready. SES's status of each
tenant (GetTenant) is read every few minutes for analytics.ses_tenants.

An account that loses the tenant API during the day (SES answers a tenant operation with 404 or
UnknownOperation) is recorded as without tenants at once, and the batch goes without
`TenantName`, rather than waiting for tomorrow's ListTenants. A deleted workspace's tenant is
queued for deletion when the workspace's rows go (private.ses_tenant_deletions) and deleted in
SES by the next run. A workspace's own mail besides campaigns (inbox replies) goes as its tenant
too (TenantMail); the platform's notices to owners and admins are the platform's mail, not the
workspace's, and go under the account.
"""

import logging
from typing import Any
from uuid import UUID

from api.core.db import Database
from api.email.ses import SesClient, SesError, tenant_resource_arn

log = logging.getLogger("growthbase.email")
# Tenants whose status is read from SES per run of the worker.
STATUS_READS_PER_RUN = 20
# Deleted workspaces' tenants deleted in SES per run.
DELETIONS_PER_RUN = 20


def refresh_tenancy(database: Database, ses: SesClient, account: str) -> bool:
    """Whether the account sends through tenants, asking SES when the stored answer is stale;
    reads the stalest tenants' status (GetTenant) as well. A failure asking keeps what was
    known (and without that, sends go without tenants)."""
    with database.as_service() as conn:
        row = conn.execute(
            "select private.ses_tenancy_stale(%s) as stale,"
            " private.ses_tenancy_supported(%s) as supported,"
            " array(select private.stale_ses_tenants(%s, %s)) as stale_tenants,"
            " array(select private.ses_tenant_deletions_due(%s, %s)) as deletions",
            (account, account, account, STATUS_READS_PER_RUN, account, DELETIONS_PER_RUN),
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
        supported = read_statuses(database, ses, account, list(row["stale_tenants"]))
    if supported and row["deletions"]:
        supported = delete_tenants(database, ses, account, list(row["deletions"]))
    return supported


def tenant_api_gone(database: Database, account: str, failure: SesError) -> None:
    """SES no longer knows the tenant operations: the account sends without tenants from now
    on (until the daily ListTenants finds them again)."""
    log.warning("the SES tenant API is gone (%s): sending without tenants", failure)
    with database.as_service() as conn:
        conn.execute("select private.save_ses_tenancy(%s, false)", (account,))


def read_statuses(database: Database, ses: SesClient, account: str, names: list[str]) -> bool:
    """Reads SES's status of the tenants; answers whether the account still has tenants."""
    answers: list[tuple[str, bool, str | None]] = []
    for name in names:
        try:
            tenant = ses.tenant(name)
        except SesError as failure:
            if failure.tenant_api_gone:
                tenant_api_gone(database, account, failure)
                return False
            log.warning("GetTenant %s failed: %s", name, failure)
            continue
        answers.append((name, tenant is not None, tenant.sending_status if tenant else None))
    if answers:
        with database.as_service() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "select private.save_ses_tenant_status(%s, %s, %s, %s)",
                [(account, name, found, status) for name, found, status in answers],
            )
    return True


def delete_tenants(database: Database, ses: SesClient, account: str, names: list[str]) -> bool:
    """Deletes deleted workspaces' tenants in SES (a failure is tried again next run); answers
    whether the account still has tenants."""
    deleted: list[tuple[str, str]] = []
    for name in names:
        try:
            ses.delete_tenant(name)
        except SesError as failure:
            if failure.tenant_api_gone:
                tenant_api_gone(database, account, failure)
                return False
            log.warning("DeleteTenant %s failed: %s", name, failure)
            continue
        deleted.append((account, name))
    if deleted:
        with database.as_service() as conn, conn.cursor() as cursor:
            cursor.executemany("select private.ses_tenant_deleted(%s, %s)", deleted)
    return True


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
) -> tuple[dict[str, SesError], bool]:
    """Makes every claimed row's tenant ready in SES (creating and associating what is
    missing) and sets the row's `tenant_name`. Answers, per workspace whose tenant SES would
    not make ready, the failure (its rows are not sent now), and whether the account still has
    tenants: when SES no longer knows the tenant operations, every row goes without one."""
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
            if failure.tenant_api_gone:
                tenant_api_gone(database, account, failure)
                for row in rows:
                    row["tenant_name"] = None
                return {}, False
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
    return failed, True


class TenantMail:
    """Sends a workspace's own mail besides campaigns (inbox replies) as the workspace's SES
    tenant, like its campaigns, when the account has tenants and the From address is covered by
    one of the workspace's verified sender identities (the identity SES associates with the
    tenant); otherwise under the account, as before."""

    def __init__(self, database: Database, ses: SesClient, account: str) -> None:
        self.database = database
        self.ses = ses
        self.account = account

    def tenant_for(self, workspace_id: UUID, sender: str) -> str | None:
        with self.database.as_service() as conn:
            found = conn.execute(
                "select * from private.mail_tenant(%s, %s, %s)",
                (self.account, workspace_id, sender),
            ).fetchone()
        if found is None:
            return None
        tenant = dict(found)
        failed, supported = prepare(self.database, self.ses, self.account, [{"tenant": tenant}])
        if failure := failed.get(str(workspace_id)):
            raise failure
        return str(tenant["tenant_name"]) if supported else None

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        workspace_id: UUID | None = None,
    ) -> str:
        """Sends one message, as the workspace's tenant where it has one; raises SesError."""
        tenant = self.tenant_for(workspace_id, sender) if workspace_id else None
        return self.ses.send_raw(raw, sender, recipient, tags, tenant)
