"""The body of a Razorpay webhook as Razorpay's documentation describes it, for the OpenAPI
document: the event envelope, and the subscription and payment entities
`private.apply_razorpay_event` reads. Razorpay adds fields and events over time, so every
object allows more than is listed; amounts are in paise, times are Unix seconds."""

from typing import Any

NULLABLE_TIME = {"type": ["integer", "null"], "description": "Unix seconds"}
# Razorpay sends notes as an object, or as an empty list when there are none.
NOTES = {"type": ["object", "array"], "description": "Key-value notes (`[]` when none)"}

SUBSCRIPTION_ENTITY: dict[str, Any] = {
    "type": "object",
    "description": "The subscription after the event",
    "required": ["id", "entity", "plan_id", "status"],
    "properties": {
        "id": {"type": "string", "description": "`sub_` and 14 letters or digits"},
        "entity": {"const": "subscription"},
        "plan_id": {"type": "string"},
        "customer_id": {"type": ["string", "null"]},
        "status": {
            "type": "string",
            "description": "created, authenticated, active, pending, halted, cancelled, "
            "completed, expired, paused",
        },
        "current_start": NULLABLE_TIME,
        "current_end": NULLABLE_TIME,
        "ended_at": NULLABLE_TIME,
        "charge_at": NULLABLE_TIME,
        "quantity": {"type": "integer"},
        "total_count": {"type": "integer"},
        "paid_count": {"type": "integer"},
        "remaining_count": {"type": ["integer", "null"]},
        "notes": NOTES,
        "short_url": {"type": ["string", "null"]},
        "has_scheduled_changes": {"type": "boolean"},
        "change_scheduled_at": NULLABLE_TIME,
        "created_at": {"type": "integer"},
    },
    "additionalProperties": True,
}

PAYMENT_ENTITY: dict[str, Any] = {
    "type": "object",
    "description": "The payment of a charge (captured) or of a failed attempt",
    "required": ["id", "entity", "amount", "currency", "status"],
    "properties": {
        "id": {"type": "string", "description": "`pay_…`"},
        "entity": {"const": "payment"},
        "amount": {"type": "integer", "description": "In paise"},
        "currency": {"type": "string"},
        "status": {
            "type": "string",
            "description": "created, authorized, captured, refunded, failed",
        },
        "order_id": {"type": ["string", "null"]},
        "invoice_id": {"type": ["string", "null"]},
        "method": {"type": "string"},
        "captured": {"type": "boolean"},
        "error_code": {"type": ["string", "null"]},
        "error_description": {"type": ["string", "null"]},
        "notes": NOTES,
        "created_at": {"type": "integer"},
    },
    "additionalProperties": True,
}


def wrapped(entity: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["entity"],
        "properties": {"entity": entity},
        "additionalProperties": True,
    }


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Razorpay webhook event. Subscription events: subscription.authenticated, "
    "activated, charged, pending, halted, updated, paused, resumed, cancelled, completed; "
    "others are stored and acknowledged too.",
    "required": ["entity", "account_id", "event", "contains", "payload", "created_at"],
    "properties": {
        "entity": {"const": "event"},
        "account_id": {"type": "string", "description": "`acc_…`"},
        "event": {"type": "string", "examples": ["subscription.charged"]},
        "contains": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The entities in `payload`",
        },
        "payload": {
            "type": "object",
            "properties": {
                "subscription": wrapped(SUBSCRIPTION_ENTITY),
                "payment": wrapped(PAYMENT_ENTITY),
            },
            "additionalProperties": True,
        },
        "created_at": {"type": "integer", "description": "When the event happened, Unix seconds"},
    },
    "additionalProperties": True,
}

EVENT_EXAMPLE: dict[str, Any] = {
    "entity": "event",
    "account_id": "acc_BFQ7uQEaa7j2z7",
    "event": "subscription.charged",
    "contains": ["subscription", "payment"],
    "payload": {
        "subscription": {
            "entity": {
                "id": "sub_00A00000000001",
                "entity": "subscription",
                "plan_id": "plan_growthbase_solo",
                "customer_id": "cust_JzK8mZ4dCqK7XY",
                "status": "active",
                "current_start": 1780000000,
                "current_end": 1782592000,
                "ended_at": None,
                "charge_at": 1782592000,
                "quantity": 1,
                "total_count": 120,
                "paid_count": 1,
                "remaining_count": 119,
                "notes": {"workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d"},
                "short_url": "https://rzp.io/i/z3b1R61A9",
                "has_scheduled_changes": False,
                "change_scheduled_at": None,
                "created_at": 1779990000,
            }
        },
        "payment": {
            "entity": {
                "id": "pay_Lq0000000001",
                "entity": "payment",
                "amount": 149900,
                "currency": "INR",
                "status": "captured",
                "order_id": "order_Lq0000000001",
                "invoice_id": "inv_Lq0000000001",
                "method": "card",
                "captured": True,
                "error_code": None,
                "error_description": None,
                "notes": [],
                "created_at": 1780000030,
            }
        },
    },
    "created_at": 1780000030,
}
