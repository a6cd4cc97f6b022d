"""xpuperf: a pytest-native conformance and performance suite for AI accelerators."""
