"""Starts moto's server with DynamoDB's per-item atomicity.

moto answers requests on many threads, and its DynamoDB backend does not lock an item while a
conditional write checks and changes it: two racing conditional updates of one item can both
succeed. DynamoDB applies each write to an item atomically, and the scheduler relies on that to
claim a task once. Serialising the backend's item operations restores the guarantee.
"""
import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_lock = threading.RLock()


def _serialised(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _lock:
            return method(*args, **kwargs)

    return wrapper


for _name in (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
):
    setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))

main()
