"""Provision the local AWS stand-in (moto's server) the way a real account would be set up.

``make run`` calls ``python -m demobank.standins`` once moto listens: it creates the EventBridge custom bus
``demobank-events``, the SQS queue ``demobank-events-audit`` and a rule on the bus that sends every event whose
source is ``com.demobank`` to that queue, so a new user sees published events arrive. Idempotent.

Development only: against a real AWS account this is infrastructure-as-code's job, not the suite's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

EVENT_BUS_NAME = "demobank-events"
AUDIT_QUEUE_NAME = "demobank-events-audit"
AUDIT_RULE_NAME = "demobank-events-to-audit-queue"
EVENT_SOURCE = "com.demobank"


@dataclass(frozen=True)
class ProvisionedStandIns:
    """What exists on the stand-in after provisioning."""

    bus_arn: str
    queue_url: str
    queue_arn: str
    rule_arn: str


def provision_aws(endpoint_url: str, region: str = "us-east-1") -> ProvisionedStandIns:
    """Create (or find) the bus, the audit queue and the rule between them on ``endpoint_url``."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=region,
    )
    events = session.client("events", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)

    try:
        bus_arn = events.describe_event_bus(Name=EVENT_BUS_NAME)["Arn"]
    except events.exceptions.ResourceNotFoundException:
        bus_arn = events.create_event_bus(Name=EVENT_BUS_NAME)["EventBusArn"]
    queue_url = sqs.create_queue(QueueName=AUDIT_QUEUE_NAME)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = events.put_rule(
        Name=AUDIT_RULE_NAME,
        EventBusName=EVENT_BUS_NAME,
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
        State="ENABLED",
        Description="Every Demo Bank event to the audit queue (local stand-in)",
    )["RuleArn"]
    events.put_targets(
        Rule=AUDIT_RULE_NAME,
        EventBusName=EVENT_BUS_NAME,
        Targets=[{"Id": "audit-queue", "Arn": queue_arn}],
    )
    return ProvisionedStandIns(bus_arn=bus_arn, queue_url=queue_url, queue_arn=queue_arn, rule_arn=rule_arn)


def main() -> int:
    endpoint_url = os.environ.get("DEMOBANK_MOTO_URL", "http://127.0.0.1:5000")
    provisioned = provision_aws(endpoint_url)
    print(f"moto at {endpoint_url}: bus {provisioned.bus_arn} -> rule {AUDIT_RULE_NAME} -> {provisioned.queue_url}")
    return 0

