"""The bundled example repo, its wheelhouse and the `make run` demo, in one place.

`bundle` finds the shipped manifests, environments and example packages; `scaffold` is
what `qrelease init` writes; `wheels` builds the example packages; `demo` makes the demo
remote and wheelhouse under a state dir; `run` is `make run`.
"""
