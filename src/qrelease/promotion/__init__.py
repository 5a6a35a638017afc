"""The release manager's verbs as Git commits: promote, roll back, preview, diff, auto-promote.

`promote` judges a pin change with the policy (`planning/policy.py`) and publishes it;
`Promoter.preview` is the same judgement without the commit (the TUI shows it first);
`diff` compares two releases; `auto` promotes for environments whose policy asks for it.
"""
