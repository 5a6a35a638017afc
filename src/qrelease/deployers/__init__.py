"""The classical side: installing releases and switching which one is live."""
