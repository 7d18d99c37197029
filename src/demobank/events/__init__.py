"""Events: bank events as CloudEvents, validated against a versioned catalog, published through an outbox.

* :mod:`demobank.events.envelope` -- the CloudEvents 1.0 envelope (ids, time format, JSON form, size).
* :mod:`demobank.events.catalog` -- the JSON Schema catalog in ``include/events`` and validation.
* :mod:`demobank.events.outbox` -- ``publish`` / ``publish_many`` / ``publish_now``: validate, then write the event
  and its pending deliveries in the caller's transaction, recording its publisher.
* :mod:`demobank.events.replay` -- queue a type's events of a time window again for one target (chunked, capped).
* :mod:`demobank.events.eventbridge` -- delivery to an Amazon EventBridge bus.

Nothing is imported here, so that importing one module does not load the others (the outbox loads SQLAlchemy
models; the EventBridge publisher loads botocore).
"""
