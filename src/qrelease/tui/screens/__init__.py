"""The screens: the matrix with its detail pane, history, diff, and the promote/rollback dialogs."""
