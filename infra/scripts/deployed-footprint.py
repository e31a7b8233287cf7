#!/usr/bin/env python3
"""What a deployed stack's real binaries leave behind per unit of work, for the cost model
(crates/tasks-sim/src/cost.rs, `Deployment`): the log bytes each function writes per invocation
(the START/END/REPORT lines included, as Lambda writes them) and a finished task's item size as
DynamoDB counts it. Run by `make e2e-deployed` after its e2e run, against the emulator.

Usage: deployed-footprint.py ENDPOINT STAGE
"""

import statistics
import sys
from decimal import Decimal

import boto3
from boto3.dynamodb.types import Binary

FUNCTIONS = ["api", "cron", "process-sqs-records", "execute-task", "update-status"]
# CloudWatch Logs counts each event's UTF-8 message bytes plus 26 bytes of overhead.
EVENT_OVERHEAD_BYTES = 26
FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


def log_bytes(logs, group):
    """(log bytes, invocations) of a function's log group: every event, and its REPORT lines."""
    total, reports = 0, 0
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        for event in page["events"]:
            message = event["message"]
            total += len(message.encode()) + EVENT_OVERHEAD_BYTES
            reports += message.startswith("REPORT RequestId:")
    return total, reports


def value_size(value):
    """DynamoDB's size of an attribute value (the AWS developer guide's item size rules)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, Decimal)):
        digits = str(abs(Decimal(value))).replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if isinstance(value, Binary):
        return len(value.value)
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in value.items())
    if isinstance(value, (list, set)):
        return 3 + sum(value_size(v) + 1 for v in value)
    raise TypeError(f"an attribute value of type {type(value).__name__}")


def item_size(item):
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def main():
    endpoint, stage = sys.argv[1], sys.argv[2]
    session = boto3.session.Session(region_name="us-east-1")
    logs = session.client("logs", endpoint_url=endpoint)
    for function in FUNCTIONS:
        total, reports = log_bytes(logs, f"/aws/lambda/tasks-{stage}-{function}")
        per_invocation = f"{total / reports:.0f}" if reports else "-"
        print(
            f"footprint: {function}: {reports} invocations, {total} log bytes, "
            f"{per_invocation} per invocation"
        )
    table = session.resource("dynamodb", endpoint_url=endpoint).Table(f"tasksTable-{stage}")
    sizes, scan = [], {}
    while True:
        page = table.scan(**scan)
        sizes += [item_size(i) for i in page["Items"] if i.get("taskStatus") in FINISHED]
        if "LastEvaluatedKey" not in page:
            break
        scan = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    if sizes:
        print(
            f"footprint: finished task items: {len(sizes)}, bytes mean "
            f"{statistics.fmean(sizes):.0f}, median {statistics.median(sizes):.0f}, "
            f"max {max(sizes)}"
        )


if __name__ == "__main__":
    main()
