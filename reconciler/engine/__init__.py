"""The engine: acts on plans, one transition commit at a time (SPEC sections 3 and 4)."""
