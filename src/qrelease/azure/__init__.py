"""Azure: the only importers of the Azure SDKs (`common`, the ARM deployer, the Quantum backend).

Nothing here is imported unless an environment file asks for Azure, so the CLI and the
daemon start without loading the SDKs.
"""
