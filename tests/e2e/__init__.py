"""e2e tests (markers by folder: see tests/conftest.py)."""
