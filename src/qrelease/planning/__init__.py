"""Pure decisions: desired x observed -> plan, and promotion policy. No I/O, no clock, no git."""
