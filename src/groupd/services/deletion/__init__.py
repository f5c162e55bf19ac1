"""Deleting a subtree (decision 0004).

- ``impact``: what a delete takes, and the guards that refuse it;
- ``request``: phase 1, one short transaction that hides the subtree and accepts the
  operation;
- ``purge``: phase 2, removing the rows in chunks and keeping the licence books;
- ``totals``: the progress totals, counted beside the chunks;
- ``policy``: which guards apply to which caller (``DeletePolicy``).

The operation's life (claim, lease, finish, fail, resume, results) is
``groupd.services.operations``'; the tuned statements are ``groupd.store.deletion``'s.
"""

from groupd.services.deletion.impact import (
    Blocker,
    Impact,
    LicenceImpact,
    find_blockers,
    measure_impact,
)
from groupd.services.deletion.policy import IDENTITY_PROVIDER, STANDARD, DeletePolicy
from groupd.services.deletion.purge import ChunkResult, StepsLeft, run_delete_chunk
from groupd.services.deletion.request import DELETE_KIND, DeletePlan, request_delete
from groupd.services.deletion.totals import (
    TotalsCount,
    count_alongside,
    count_totals,
    needs_totals,
    record_totals,
)
from groupd.services.progress import Progress, Tally

__all__ = [
    "DELETE_KIND",
    "IDENTITY_PROVIDER",
    "STANDARD",
    "DeletePolicy",
    "Blocker",
    "ChunkResult",
    "DeletePlan",
    "Impact",
    "LicenceImpact",
    "Progress",
    "StepsLeft",
    "Tally",
    "TotalsCount",
    "count_alongside",
    "count_totals",
    "find_blockers",
    "measure_impact",
    "needs_totals",
    "record_totals",
    "request_delete",
    "run_delete_chunk",
]
