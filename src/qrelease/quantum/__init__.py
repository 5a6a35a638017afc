"""The quantum side: gates before release, target status; one Protocol, several backends."""
