"""Shopify's order statuses in ours, one rule for every door an order comes through: its
webhooks, its backfill and its CSV export."""

# Shopify's financial status -> our status. Only paid and fulfilled count as revenue and as
# purchases in RFM: an order partly paid, authorized or pending has not brought its money yet; one
# partly refunded still stands as a purchase (at its total); a voided one never happened.
SHOPIFY_FINANCIAL_STATUSES = {
    "paid": "paid",
    "partially_refunded": "paid",
    "pending": "pending",
    "authorized": "pending",
    "partially_paid": "pending",
    "refunded": "refunded",
    "voided": "cancelled",
}


def shopify_status(financial: str, fulfillment: str | None, cancelled: bool) -> str:
    """A cancelled order is cancelled whatever it was paid; a paid one that is fulfilled is
    fulfilled; an unknown financial status is pending."""
    status = SHOPIFY_FINANCIAL_STATUSES.get(financial, "pending")
    if cancelled:
        return "cancelled"
    if status == "paid" and fulfillment == "fulfilled":
        return "fulfilled"
    return status
