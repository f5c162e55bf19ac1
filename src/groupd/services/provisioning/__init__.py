"""Provisioning from an identity provider: users and user groups it owns (SCIM).

The SCIM face parses with ``scim2-models`` and calls these; the rules (where provisioned
users live, which guards a provider's delete meets, what a membership change does) and
the queries (filters become SQL) live here.
"""
