"""Webhook delivery: a face like the operations worker, started beside it by ``serve``.

``sender`` signs and sends one subscription's messages; ``dispatcher`` runs the threads
that relay the outbox, claim subscriptions and record what was sent.
"""
