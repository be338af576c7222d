"""The automations feature's provider, as typed dependencies (installed by `api.app`)."""

from typing import Annotated, Literal, get_args

from fastapi import Depends, Request

from api.automations.make import MakeClient
from api.core.deps import Slot

AutomationType = Literal["seo_audit", "content_gen", "report"]

MAKE = Slot("make", MakeClient, "Make.com is not configured")
# Make.com's client, held once per automation type whose scenario webhook is configured.
SCENARIOS = {
    automation_type: Slot(
        f"make_{automation_type}", MakeClient, f"Make.com is not configured for {automation_type}"
    )
    for automation_type in get_args(AutomationType)
}


def make_for_scenario(automation_type: AutomationType, request: Request) -> MakeClient:
    """Make.com's client, when the path's automation type has a scenario to send its jobs to."""
    return SCENARIOS[automation_type].required(request)


Make = Annotated[MakeClient, Depends(MAKE.required)]
OptionalMake = Annotated[MakeClient | None, Depends(MAKE.optional)]
MakeScenario = Annotated[MakeClient, Depends(make_for_scenario)]
