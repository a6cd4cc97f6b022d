"""Measurement: the load generator and its scenarios (loadgen, timing, stats),
LoadGen's integrity audits, the mlcommons-loadgen driver, the device-resident
figures, peak memory, and the FLOPs behind MFU. Pure of pytest: the suites and
the backend's worker call them."""
