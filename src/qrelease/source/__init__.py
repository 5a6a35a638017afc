"""Reading and writing the GitOps repo; the only place GitPython is imported."""
