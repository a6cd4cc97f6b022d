"""The package check runs no zoo items: xpuperf.plugin reads no zoo and leaves
the report folder alone, as for the contract kit."""
XPUPERF_ZOO_RUN = False
