"""Razorpay subscriptions through the `razorpay` SDK (creation, fetch, cancellation, plan
change). The SDK pastes ids into URL paths as they are, so every id is checked against
Razorpay's shape and URL-quoted before it reaches the SDK. Failures raise `RazorpayError`;
the feature decides what the caller sees (`api.billing.errors`)."""

import re
from typing import Any, Literal
from urllib.parse import quote
from uuid import UUID

import razorpay
import requests

TIMEOUT_SECONDS = 10
# Razorpay needs a bounded count for a subscription; ten years of monthly charges.
TOTAL_COUNT = 120
SUBSCRIPTION_ID = re.compile(r"sub_[A-Za-z0-9]{14}")

# Why a call did not give an answer we may act on:
#   id_invalid        a stored id Razorpay never issues (refused before any call)
#   not_in_workspace  Razorpay holds the subscription for another workspace (its notes)
#   refused           Razorpay refused the request (the SDK's BadRequestError)
#   failed            Razorpay could not be reached, timed out or failed on its side
Reason = Literal["id_invalid", "not_in_workspace", "refused", "failed"]


class RazorpayError(Exception):
    """`detail` is Razorpay's own description of a refusal; nothing else is quoted (an error
    from the HTTP stack can name URLs and hosts)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


def subscription_path_id(subscription_id: str) -> str:
    """The id as it may appear in a URL path; an id Razorpay never issues is refused."""
    if not SUBSCRIPTION_ID.fullmatch(subscription_id):
        raise RazorpayError("id_invalid")
    return quote(subscription_id, safe="")


class RazorpayBilling:
    def __init__(self, *, key_id: str, key_secret: str, base_url: str) -> None:
        self.key_id = key_id
        self.client = razorpay.Client(auth=(key_id, key_secret), base_url=base_url)

    def _call(self, action: Any, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = action(*args, timeout=TIMEOUT_SECONDS)
        except razorpay.errors.BadRequestError as error:
            raise RazorpayError("refused", str(error)) from error
        except (
            razorpay.errors.ServerError,
            razorpay.errors.GatewayError,
            requests.RequestException,
        ) as error:
            raise RazorpayError("failed") from error
        return result

    def create_subscription(self, plan_id: str, workspace_id: str) -> dict[str, Any]:
        return self._call(
            self.client.subscription.create,
            {
                "plan_id": plan_id,
                "total_count": TOTAL_COUNT,
                "quantity": 1,
                "customer_notify": 1,
                "notes": {"workspace_id": workspace_id},
            },
        )

    def fetch_for_workspace(self, subscription_id: str, workspace_id: UUID) -> dict[str, Any]:
        """The subscription as Razorpay holds it, if Razorpay holds it for `workspace_id` (the
        notes we send on create); else refused, so a stored id never acts on another's."""
        path_id = subscription_path_id(subscription_id)
        held = self._call(self.client.subscription.fetch, path_id, {})
        notes = held.get("notes")
        owner = notes.get("workspace_id") if isinstance(notes, dict) else None
        if held.get("id") != subscription_id or owner != str(workspace_id):
            raise RazorpayError("not_in_workspace")
        return held

    def cancel(self, subscription_id: str, at_period_end: bool) -> dict[str, Any]:
        return self._call(
            self.client.subscription.cancel,
            subscription_path_id(subscription_id),
            {"cancel_at_cycle_end": 1 if at_period_end else 0},
        )

    def change_plan(self, subscription_id: str, plan_id: str) -> dict[str, Any]:
        return self._call(
            self.client.subscription.edit,
            subscription_path_id(subscription_id),
            {"plan_id": plan_id, "schedule_change_at": "cycle_end"},
        )
