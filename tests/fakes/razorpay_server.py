"""A real local HTTP server speaking the Razorpay subscriptions API (as the `razorpay` SDK calls
it: create, fetch, cancel, edit), and webhook payloads in the shapes of Razorpay's webhook
documentation. The server remembers the subscriptions it holds, so fetch answers their notes."""

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve

KEY_ID = "rzp_test_" + uuid.uuid4().hex[:14]
KEY_SECRET = uuid.uuid4().hex


def subscription_entity(
    sub_id: str, plan_id: str, status: str, paid_count: int = 0, period: int = 0
) -> dict[str, Any]:
    start = 1_780_000_000 + period * 2_592_000
    return {
        "id": sub_id,
        "entity": "subscription",
        "plan_id": plan_id,
        "customer_id": "cust_JzK8mZ4dCqK7XY",
        "status": status,
        "current_start": start if status != "created" else None,
        "current_end": start + 2_592_000 if status != "created" else None,
        "ended_at": None,
        "quantity": 1,
        "notes": {"workspace_id": "w"},
        "charge_at": start + 2_592_000,
        "start_at": 1_780_000_000,
        "end_at": 2_091_040_000,
        "auth_attempts": 0,
        "total_count": 120,
        "paid_count": paid_count,
        "customer_notify": True,
        "created_at": 1_779_990_000,
        "expire_by": None,
        "short_url": "https://rzp.io/i/z3b1R61A9",
        "has_scheduled_changes": False,
        "change_scheduled_at": None,
        "source": "api",
        "payment_method": "card",
        "offer_id": None,
        "remaining_count": 120 - paid_count,
    }


def payment_entity(
    series: str, number: int, status: str = "captured", amount: int = 499_900
) -> dict[str, Any]:
    """Payment `number` of a subscription; `series` keeps ids unique, as Razorpay's are."""
    failed = status == "failed"
    return {
        "id": f"pay_{series}{number:04d}",
        "entity": "payment",
        "amount": amount,
        "currency": "INR",
        "status": status,
        "order_id": f"order_{series}{number:04d}",
        "invoice_id": f"inv_{series}{number:04d}",
        "international": False,
        "method": "card",
        "amount_refunded": 0,
        "refund_status": None,
        "captured": not failed,
        "description": "Recurring Payment via Subscription",
        "card_id": "card_Lq0000000001",
        "bank": None,
        "wallet": None,
        "vpa": None,
        "email": "billing@example.test",
        "contact": "+919876543210",
        "customer_id": "cust_JzK8mZ4dCqK7XY",
        "token_id": "token_Lq0000000001",
        "notes": [],
        "fee": 0 if failed else 11_798,
        "tax": 0 if failed else 1_800,
        "error_code": "BAD_REQUEST_ERROR" if failed else None,
        "error_description": "Payment failed due to insufficient funds" if failed else None,
        "created_at": 1_780_000_100 + number,
    }


def event(
    name: str, subscription: dict[str, Any], at: int, payment: dict[str, Any] | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"subscription": {"entity": subscription}}
    if payment:
        payload["payment"] = {"entity": payment}
    return {
        "entity": "event",
        "account_id": "acc_BFQ7uQEaa7j2z7",
        "event": name,
        "contains": ["subscription", "payment"] if payment else ["subscription"],
        "payload": payload,
        "created_at": at,
    }


def new_subscription_id() -> str:
    """An id in Razorpay's shape: `sub_` and 14 letters or digits."""
    return "sub_" + uuid.uuid4().hex[:14]


NOT_FOUND = {
    "error": {
        "code": "BAD_REQUEST_ERROR",
        "description": "The id provided does not exist",
        "source": "NA",
        "step": "NA",
        "reason": "NA",
        "metadata": {},
    }
}


@dataclass
class RazorpayServer:
    base_url: str = ""
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_with: int | None = None  # answer every call with this 5xx (an outage)

    def hold(self, plan_id: str, workspace_id: str) -> str:
        """A subscription Razorpay holds for `workspace_id` (created elsewhere, as by another
        workspace's checkout); returns its id."""
        sub_id = new_subscription_id()
        sub = subscription_entity(sub_id, plan_id, "active", 1)
        sub["notes"] = {"workspace_id": workspace_id}
        self.subscriptions[sub_id] = sub
        return sub_id


@contextmanager
def serve_razorpay() -> Iterator[RazorpayServer]:
    state = RazorpayServer()
    expected_auth = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()

    class Handler(FakeHandler):
        def handle_any(self, method: str) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append((method, self.path, body))
            if self.headers.get("Authorization") != expected_auth:
                self.reply_json(
                    401,
                    {
                        "error": {
                            "code": "BAD_REQUEST_ERROR",
                            "description": "Authentication failed",
                        }
                    },
                )
                return
            if state.fail_with:
                self.reply_json(
                    state.fail_with,
                    {
                        "error": {
                            "code": "SERVER_ERROR",
                            "description": "The server encountered an error. The incident has"
                            " been reported to admins.",
                        }
                    },
                )
                return
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            held = state.subscriptions.get(parts[2]) if len(parts) > 2 else None
            if method == "POST" and parts == ["v1", "subscriptions"]:
                sub = subscription_entity(new_subscription_id(), body["plan_id"], "created")
                sub.update(
                    total_count=body["total_count"],
                    notes=body.get("notes", {}),
                    created_at=int(time.time()),
                )
                state.subscriptions[sub["id"]] = sub
                self.reply_json(200, sub)
            elif parts[:2] == ["v1", "subscriptions"] and len(parts) in (3, 4) and held is None:
                self.reply_json(400, NOT_FOUND)
            elif method == "GET" and held is not None and len(parts) == 3:
                self.reply_json(200, held)
            elif method == "POST" and held is not None and parts[3:] == ["cancel"]:
                if held["status"] in ("cancelled", "completed", "expired"):
                    self.reply_json(
                        400,
                        {
                            "error": {
                                "code": "BAD_REQUEST_ERROR",
                                "description": "Subscription is not cancellable in"
                                f" {held['status']} status.",
                            }
                        },
                    )
                    return
                if body.get("cancel_at_cycle_end") != 1:
                    held.update(status="cancelled", ended_at=int(time.time()))
                self.reply_json(200, held)
            elif method == "PATCH" and held is not None and len(parts) == 3:
                held.update(has_scheduled_changes=True, change_scheduled_at=held["current_end"])
                self.reply_json(200, held)
            else:
                self.reply_json(
                    400,
                    {
                        "error": {
                            "code": "BAD_REQUEST_ERROR",
                            "description": "The requested URL was not found on the server.",
                        }
                    },
                )

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PATCH(self) -> None:
            self.handle_any("PATCH")

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state
