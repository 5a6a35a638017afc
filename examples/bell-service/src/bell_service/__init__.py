"""bell-service: a qrelease example app that serves Bell pairs from its pinned quantum program."""
