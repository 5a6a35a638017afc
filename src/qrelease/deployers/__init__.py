"""The classical side: installing releases and switching environments; one Protocol, several backends."""
