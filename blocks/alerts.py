"""Alerts as Prefect automations: the pipeline went stale, keeps failing, or a stage
refused a file (a dead letter).

Prefect's server watches the flow-run events itself (no extra process of ours), and each
automation sends the message through one webhook block the user configures. The
definitions are plain values, so the test creates them on a real Prefect server and checks
what reaches a webhook on 127.0.0.1.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

from flows.core.settings import ALERT_WEBHOOK_BLOCK, DEAD_LETTER_EVENT, Settings

STALE = "cryptolytics: pipeline stale"
FAILING = "cryptolytics: pipeline failing"
DEAD_LETTER = "cryptolytics: dead letter"
PIPELINE_FLOW = {"prefect.resource.role": "flow", "prefect.resource.name": "pipeline"}


def save_webhook(url: str) -> UUID:
    """Create or overwrite the webhook block; the message is JSON with subject and body."""
    block = CustomWebhookNotificationBlock(
        name="Cryptolytics alerts",
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "cryptolytics"},
    )
    return cast(UUID, block.save(ALERT_WEBHOOK_BLOCK, overwrite=True))


def _minutes(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes:g} minutes" if minutes >= 1 else f"{window.total_seconds():g} seconds"


def stale_automation(block_id: UUID, within: timedelta) -> Automation:
    """Fires when no `pipeline` run completed for `within` (again every `within` after)."""
    return Automation(
        name=STALE,
        description="No pipeline run has completed recently: the warehouse is going stale.",
        trigger=EventTrigger(
            posture=Posture.Proactive,
            expect={"prefect.flow-run.Completed"},
            match_related=PIPELINE_FLOW,
            threshold=1,
            within=within,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=f"Cryptolytics: no pipeline run completed in {_minutes(within)}",
                body=(
                    f"No `pipeline` flow run has completed in the last {_minutes(within)}; "
                    "the warehouse and the app are going stale. Check the work pool's "
                    "worker and the latest runs in the Prefect UI."
                ),
            )
        ],
    )


def failing_automation(block_id: UUID, within: timedelta) -> Automation:
    """Fires on the second failed (or crashed) `pipeline` run within `within`."""
    return Automation(
        name=FAILING,
        description="Two pipeline runs failed in a row: not a one-off network hiccup.",
        trigger=EventTrigger(
            posture=Posture.Reactive,
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match_related=PIPELINE_FLOW,
            threshold=2,
            within=within,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="Cryptolytics: the pipeline failed twice in a row",
                body=(
                    f"Two `pipeline` flow runs failed within {_minutes(within)}, the latest "
                    "{{ event.resource.name }}: {{ event.payload.validated_state.message }}. "
                    "Its log in the Prefect UI says why (quarantined snapshots are in the "
                    "lake's quarantine/ folder)."
                ),
            )
        ],
    )


def dead_letter_automation(block_id: UUID) -> Automation:
    """Fires on every run that moved a file to quarantine or left assets out: the run
    completed (one bad input hurts only itself), but someone should look at it."""
    return Automation(
        name=DEAD_LETTER,
        description="A pipeline stage refused a lake file or some rows: see the health page.",
        trigger=EventTrigger(
            posture=Posture.Reactive,
            expect={DEAD_LETTER_EVENT},
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="Cryptolytics: a stage refused data (dead letter)",
                body=(
                    "{{ event.payload.summary }}. The run went on without it; the reasons "
                    "are on the app's health page and beside each file in the lake's "
                    "quarantine/ folder."
                ),
            )
        ],
    )


def apply_automation(automation: Automation) -> tuple[UUID, str]:
    """Create it, or update the one of the same name in place: run it as often as you like."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
    if not existing:
        created = cast(Automation, automation.create())
        assert created.id is not None  # the server gave it one
        return created.id, "created"
    automation.id = existing[0].id
    automation.update()
    for duplicate in existing[1:]:  # left by an older, non-idempotent setup
        with get_client(sync_client=True) as client:
            client.delete_automation(duplicate.id)
    return existing[0].id, "updated"


def register_alerts(settings: Settings) -> list[str]:
    """The webhook block and both automations; what was done, one line each."""
    if settings.alert_webhook_url is None:
        return ["alerts: skipped (CRYPTOLYTICS_ALERT_WEBHOOK_URL is not set)"]
    block_id = save_webhook(settings.alert_webhook_url.get_secret_value())
    done = [f"block {ALERT_WEBHOOK_BLOCK}: saved"]
    for automation in (
        stale_automation(block_id, settings.alert_stale_after),
        failing_automation(block_id, settings.alert_failures_within),
        dead_letter_automation(block_id),
    ):
        _, action = apply_automation(automation)
        done.append(f"automation {automation.name!r}: {action}")
    return done
