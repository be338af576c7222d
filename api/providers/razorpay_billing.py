"""Razorpay subscriptions through the `razorpay` SDK (creation, cancellation, plan change)."""

from typing import Any

import razorpay
import requests

from api.errors import ApiError

TIMEOUT_SECONDS = 10
# Razorpay needs a bounded count for a subscription; ten years of monthly charges.
TOTAL_COUNT = 120


def provider_failure(error: Exception) -> ApiError:
    if isinstance(error, razorpay.errors.BadRequestError):
        return ApiError(422, "billing_request_refused", f"Razorpay refused the request: {error}")
    return ApiError(502, "provider_error", "Razorpay could not be reached or failed")


class RazorpayBilling:
    def __init__(self, *, key_id: str, key_secret: str, base_url: str) -> None:
        self.key_id = key_id
        self.client = razorpay.Client(auth=(key_id, key_secret), base_url=base_url)

    def _call(self, action: Any, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = action(*args, timeout=TIMEOUT_SECONDS)
        except (
            razorpay.errors.BadRequestError,
            razorpay.errors.ServerError,
            razorpay.errors.GatewayError,
            requests.RequestException,
        ) as error:
            raise provider_failure(error) from error
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

    def cancel(self, subscription_id: str, at_period_end: bool) -> dict[str, Any]:
        return self._call(
            self.client.subscription.cancel,
            subscription_id,
            {"cancel_at_cycle_end": 1 if at_period_end else 0},
        )

    def change_plan(self, subscription_id: str, plan_id: str) -> dict[str, Any]:
        return self._call(
            self.client.subscription.edit,
            subscription_id,
            {"plan_id": plan_id, "schedule_change_at": "cycle_end"},
        )
