"""Amazon SES (v2) through boto3: sending raw MIME and managing sender identities.

Raw content is what lets each message carry its own List-Unsubscribe headers (SendBulkEmail
takes only stored templates, and its per-entry headers are not what moto or our tests can see),
so every recipient is one SendEmail call. boto3 makes exactly one attempt per call (a retried
SendEmail may deliver twice); failures go back to the send ledger, which retries with backoff.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
)

from api.core.errors import CodedError

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# SES's rate: "Maximum sending rate exceeded" (SESv2 answers 429 TooManyRequestsException; the
# common AWS error and SES v1 spell it ThrottlingException and Throttling). The message is
# dropped, not queued: slow down and send it again.
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling"})
# SES failing or refusing to send for the whole account for a while: no recipient's fault.
UNAVAILABLE_CODES = frozenset(
    {
        "SendingPausedException",
        "InternalFailure",
        "InternalServiceErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
# Worth retrying later: the above, and a quota SES says is exceeded.
RETRYABLE_CODES = THROTTLING_CODES | UNAVAILABLE_CODES | {"LimitExceededException"}


class SesError(CodedError):
    """A failed SES call: SES's code and words, and whether trying again later may help."""

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool,
        outcome_unknown: bool = False,
        status: int = 400,
    ) -> None:
        super().__init__(code, message)
        self.retryable = retryable
        # The request reached SES but no answer came back: the message may have been accepted.
        self.outcome_unknown = outcome_unknown
        # SES's HTTP status; 0 when no answer came (the request did not get through).
        self.status = status

    @property
    def tenant_api_gone(self) -> bool:
        """The endpoint does not know the operation (the account has no tenant API)."""
        return self.code in UNKNOWN_OPERATION_CODES

    @property
    def kind(self) -> str:
        """How the send ledger treats it (private.record_email_outcomes): `throttled`,
        `unavailable` (SES down or not reachable), `retry` (transient, or maybe accepted) or
        `failed` (permanent)."""
        if self.code in THROTTLING_CODES:
            return "throttled"
        if self.outcome_unknown or not self.retryable:
            return "retry" if self.retryable else "failed"
        if self.code in UNAVAILABLE_CODES or self.status >= 500 or self.status == 0:
            return "unavailable"
        return "retry"


# A tenant's own suppression list, for bounces and complaints: one workspace's bad list does
# not suppress another's recipients, nor does another's protect it.
TENANT_SUPPRESSION = {"SuppressedReasons": ["BOUNCE", "COMPLAINT"], "SuppressionScope": "TENANT"}
# How an endpoint without an operation answers it: moto's server with a bare 404, AWS with
# UnknownOperationException.
UNKNOWN_OPERATION_CODES = frozenset({"404", "UnknownOperationException", "UnknownOperation"})


@dataclass(frozen=True)
class Tenant:
    name: str
    arn: str
    sending_status: str | None


def tenant_resource_arn(tenant_arn: str, kind: str, name: str) -> str:
    """The ARN of an identity or configuration set in the tenant's account and region, as
    CreateTenantResourceAssociation takes it (`arn:aws:ses:<region>:<account>:<kind>/<name>`)."""
    prefix = tenant_arn.split(":")[:5]
    return ":".join([*prefix, f"{kind}/{name}"])


def tenant_from(answer: dict[str, Any]) -> Tenant:
    return Tenant(
        name=str(answer["TenantName"]),
        arn=str(answer["TenantArn"]),
        sending_status=answer.get("SendingStatus"),
    )


@dataclass(frozen=True)
class IdentityState:
    verified: bool
    dkim_status: str | None
    dkim_records: list[dict[str, str]]
    # The custom MAIL FROM domain and SES's status of it (SUCCESS: SPF passes aligned with the
    # From domain); None without one (SES's own amazonses.com: SPF passes but is not aligned).
    mail_from_domain: str | None = None
    mail_from_status: str | None = None


def dkim_records(identity: str, tokens: list[str]) -> list[dict[str, str]]:
    """The CNAME records Easy DKIM asks the domain's owner to publish."""
    domain = identity.rsplit("@", 1)[-1]
    return [
        {
            "type": "CNAME",
            "name": f"{token}._domainkey.{domain}",
            "value": f"{token}.dkim.amazonses.com",
        }
        for token in tokens
    ]


def failure_from(error: Exception) -> SesError:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "ClientError"))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        return SesError(
            code,
            str(details.get("Message", "")),
            code in RETRYABLE_CODES or status >= 500,
            status=status,
        )
    return SesError(
        type(error).__name__,
        str(error),
        True,
        outcome_unknown=isinstance(error, ReadTimeoutError | ConnectionClosedError),
        status=0,
    )


def message_id_domain(region: str) -> str:
    """The domain of the Message-ID SES gives every message it sends from `region` (SES replaces
    any Message-ID we set): `<message id>@email.amazonses.com` in us-east-1,
    `<message id>@<region>.amazonses.com` elsewhere."""
    return "email.amazonses.com" if region == "us-east-1" else f"{region}.amazonses.com"


class SesClient:
    def __init__(
        self,
        *,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        endpoint_url: str | None,
        configuration_set: str | None,
        max_connections: int,
    ) -> None:
        self.configuration_set = configuration_set
        self.message_id_domain = message_id_domain(region)
        self.client: SESV2Client = boto3.client(
            "sesv2",
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            endpoint_url=endpoint_url,
            config=Config(
                # One attempt per call: a resent SendEmail can deliver twice, and the send
                # ledger already retries with backoff (and waits out ambiguous timeouts).
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=20,
                max_pool_connections=max_connections,
            ),
        )

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        tenant: str | None = None,
    ) -> str:
        """Sends one message (as `tenant`, when given); answers SES's message id or raises
        SesError."""
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in tags.items()],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        if tenant:
            request["TenantName"] = tenant
        try:
            return self.client.send_email(**request)["MessageId"]
        except (ClientError, BotoCoreError) as error:
            raise failure_from(error) from error

    def send_simple(self, sender: str, recipient: str, subject: str, text: str) -> str:
        """Sends a plain-text message of the platform's own (no unsubscribe: it is not
        marketing); answers SES's message id or raises SesError."""
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"}},
                }
            },
        }
        try:
            return self.client.send_email(**request)["MessageId"]
        except (ClientError, BotoCoreError) as error:
            raise failure_from(error) from error

    def account_quota(self) -> dict[str, Any]:
        """GetAccount's send quota and sending state, as private.save_ses_account takes them."""
        try:
            answer = self.client.get_account()
        except (ClientError, BotoCoreError) as error:
            raise failure_from(error) from error
        quota = answer.get("SendQuota", {})
        return {
            "MaxSendRate": quota.get("MaxSendRate"),
            "Max24HourSend": quota.get("Max24HourSend"),
            "SentLast24Hours": quota.get("SentLast24Hours"),
            "SendingEnabled": answer.get("SendingEnabled"),
            "EnforcementStatus": answer.get("EnforcementStatus"),
            "ProductionAccessEnabled": answer.get("ProductionAccessEnabled"),
        }

    def tenants_supported(self) -> bool:
        """Whether the account has SES tenants: ListTenants answers, rather than 404 or
        UnknownOperation (an endpoint without the tenant API, such as moto's server)."""
        try:
            self.client.list_tenants(PageSize=1)
        except ClientError as error:
            if failure_from(error).code in UNKNOWN_OPERATION_CODES:
                return False
            raise failure_from(error) from error
        except BotoCoreError as error:
            raise failure_from(error) from error
        return True

    def ensure_tenant(self, name: str, identity: str) -> tuple[Tenant, list[str]]:
        """Creates the tenant unless SES has it, with its own suppression list, and associates
        the identity (and the configuration set) with it; answers the tenant and the ARNs
        associated. Both steps take SES's AlreadyExists as done, so calling again is harmless."""
        try:
            try:
                tenant = tenant_from(
                    dict(
                        self.client.create_tenant(
                            TenantName=name,
                            SuppressionAttributes=TENANT_SUPPRESSION,  # type: ignore[arg-type]
                        )
                    )
                )
            except ClientError as error:
                if failure_from(error).code != "AlreadyExistsException":
                    raise
                tenant = tenant_from(dict(self.client.get_tenant(TenantName=name)["Tenant"]))
            resources = [tenant_resource_arn(tenant.arn, "identity", identity)]
            if self.configuration_set:
                resources.append(
                    tenant_resource_arn(tenant.arn, "configuration-set", self.configuration_set)
                )
            for resource in resources:
                try:
                    self.client.create_tenant_resource_association(
                        TenantName=name, ResourceArn=resource
                    )
                except ClientError as error:
                    if failure_from(error).code != "AlreadyExistsException":
                        raise
        except (ClientError, BotoCoreError) as error:
            raise failure_from(error) from error
        return tenant, resources

    def delete_tenant(self, name: str) -> None:
        """Deletes the tenant (SES removes its associations, not the identities); a tenant SES
        no longer has is as good as deleted."""
        try:
            self.client.delete_tenant(TenantName=name)
        except ClientError as error:
            if failure_from(error).code != "NotFoundException":
                raise failure_from(error) from error
        except BotoCoreError as error:
            raise failure_from(error) from error

    def tenant(self, name: str) -> Tenant | None:
        """SES's view of the tenant (GetTenant); None when SES has no such tenant."""
        try:
            return tenant_from(dict(self.client.get_tenant(TenantName=name)["Tenant"]))
        except ClientError as error:
            if failure_from(error).code == "NotFoundException":
                return None
            raise failure_from(error) from error
        except BotoCoreError as error:
            raise failure_from(error) from error

    def create_identity(self, identity: str, *, adopt_existing: bool) -> IdentityState:
        """Creates the identity and answers its state. One that already exists in SES is kept
        when `adopt_existing`, else deleted and created again (its verification is not ours)."""
        try:
            self.client.create_email_identity(EmailIdentity=identity)
        except ClientError as error:
            if failure_from(error).code != "AlreadyExistsException":
                raise failure_from(error) from error
            if not adopt_existing:
                try:
                    self.client.delete_email_identity(EmailIdentity=identity)
                    self.client.create_email_identity(EmailIdentity=identity)
                except (ClientError, BotoCoreError) as again:
                    raise failure_from(again) from again
        except BotoCoreError as error:
            raise failure_from(error) from error
        return self.identity_state(identity)

    def identity_state(self, identity: str) -> IdentityState:
        try:
            answer = self.client.get_email_identity(EmailIdentity=identity)
        except (ClientError, BotoCoreError) as error:
            raise failure_from(error) from error
        dkim = answer.get("DkimAttributes", {})
        mail_from = answer.get("MailFromAttributes", {})
        return IdentityState(
            # moto reports VerificationStatus only; SES reports both.
            verified=bool(answer.get("VerifiedForSendingStatus"))
            or answer.get("VerificationStatus") == "SUCCESS",
            dkim_status=dkim.get("Status"),
            dkim_records=dkim_records(identity, list(dkim.get("Tokens", []))),
            mail_from_domain=mail_from.get("MailFromDomain") or None,
            mail_from_status=mail_from.get("MailFromDomainStatus") if mail_from else None,
        )
