"""moto's server with the costs that made the local bus slow taken out (same API, same answers).

``python -m demobank.standins.moto_server -H 127.0.0.1 -p 5000`` is ``moto_server`` (same arguments) after
:func:`patch_moto`. Measured with moto 5.2.5 and the bus's rule sending every event to the audit queue
(``bench/events_publish.py``, "where the time goes"; py-spy profiles of the server), per event:

1. **SQS attributes.** ``SendMessage`` reads the queue's attributes to learn one setting
   (``ContentBasedDeduplication``) and ``ReceiveMessage`` reads them three times per message it returns
   (``MessageRetentionPeriod``); each read computes every attribute, including three message counts that each scan
   every message in the queue. So every message costs time proportional to the queue's length: quadratic, 20
   events/s once a few thousand wait. Patched: the counts are computed when ``GetQueueAttributes`` answers, the
   only place that returns them; moto's own reads skip them (they never look at them).
2. **SQS scans.** The visible-message scan of every receive read the clock twice per message; a batch delete
   scanned the whole queue twice per entry. Patched: one clock read per scan; one scan per batch, which stops once
   every entry is found (received messages are at the front).
3. **Rule input templates.** A rule's target gets the event through ``EventTemplateParser.parse``, which builds a
   new JSONPath parser (grammar tables included) for each of the template's eight paths: half of a ``PutEvents``.
   Patched: each path text is parsed once (``jsonpath_ng.ext.parse`` memoised; a parsed path is immutable).
4. **Request routing.** Every request lists moto's package directory (``list_of_moto_modules``: one ``isdir``
   per service) and matches the host against every service's URL patterns, under a lock. Patched: the directory
   listing is read once and the host's backend remembered.

The answers are the same (``tests/test_standins.py`` runs the same calls against both servers). ``ReceiveMessage``
still scans the visible messages once per call: the audit recorder (:mod:`demobank.standins.audit_recorder`)
keeps the queue short. Development only, like moto itself; production code does not know which AWS it talks to.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

_answering = threading.local()
_patched = False


def _patch_sqs_counts() -> None:
    from moto.sqs.models import Queue
    from moto.sqs.responses import SQSResponse

    for name in ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
                 "approximate_number_of_messages_not_visible"):
        original = getattr(Queue, name).fget

        def count(queue: Any, _original: Any = original) -> int:
            return _original(queue) if getattr(_answering, "active", False) else 0

        setattr(Queue, name, property(count))

    get_queue_attributes = SQSResponse.get_queue_attributes

    @functools.wraps(get_queue_attributes)
    def answer_with_counts(self: Any, *args: Any, **kwargs: Any) -> Any:
        _answering.active = True
        try:
            return get_queue_attributes(self, *args, **kwargs)
        finally:
            _answering.active = False

    SQSResponse.get_queue_attributes = answer_with_counts


def _patch_sqs_scans() -> None:
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    def messages(queue: Any) -> list[Any]:
        now = unix_time_millis()
        # Message.visible is now > visible_at; Message.delayed is now < delayed_until.
        return [message for message in queue._messages if message.visible_at < now and message.delayed_until <= now]

    Queue.messages = property(messages)

    def delete_message_batch(self: Any, queue_name: str,
                             receipts: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
        queue = self.get_queue(queue_name)
        handles = {receipt["ReceiptHandle"] for receipt in receipts}
        known = {handle for handle in handles if handle in queue.deleted_messages}  # deleted before: a success
        remaining = handles - known
        kept: list[Any] = []
        current = queue._messages
        for index, message in enumerate(current):
            if not remaining:
                kept.extend(current[index:])
                break
            matched = remaining.intersection(message.all_receipt_handles)
            if not matched:
                kept.append(message)
                continue
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
            known.update(matched)
            remaining -= matched
        queue._messages = kept
        success: list[str] = []
        errors: list[dict[str, str]] = []
        for receipt in receipts:
            if receipt["ReceiptHandle"] in known:
                success.append(receipt["Id"])
            else:  # moto's own error entry, word for word
                errors.append({"Id": receipt["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid",
                               "Message": f'The input receipt handle "{receipt["ReceiptHandle"]}" is not a valid '
                                          "receipt handle."})
        return success, errors

    SQSBackend.delete_message_batch = delete_message_batch


def _patch_rule_templates() -> None:
    import jsonpath_ng.ext

    # moto.events.utils imports parse inside the function, at every call: the module attribute is what it gets.
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)


def _patch_routing() -> None:
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    find_backend = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}

    @functools.wraps(find_backend)
    def backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:
            found[host] = find_backend(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = backend_for_host


def patch_moto() -> None:
    """Apply every patch (idempotent)."""
    global _patched
    if _patched:
        return
    _patch_sqs_counts()
    _patch_sqs_scans()
    _patch_rule_templates()
    _patch_routing()
    _patched = True


def main(argv: list[str] | None = None) -> int:
    from moto.server import main as moto_main

    patch_moto()
    moto_main(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
