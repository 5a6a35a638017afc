"""Pure pydantic types for what Git holds and what the controller reports; no I/O."""
