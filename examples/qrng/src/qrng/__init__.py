"""qrng: a qrelease example app that serves random numbers from its pinned quantum program."""
