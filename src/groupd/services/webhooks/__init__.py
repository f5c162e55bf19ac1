"""Events of committed changes, delivered to each tenant's webhook subscriptions.

``outbox`` writes them in the change's transaction (from the audit trail's one seam),
``relay`` gives them to the matching subscriptions as deliveries, ``deliveries`` claims
and records what a sender did, ``subscriptions`` is what an admin manages.
"""
