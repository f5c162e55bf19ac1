"""Use cases. They take plain values and a unit of work, raise domain errors, never commit."""
