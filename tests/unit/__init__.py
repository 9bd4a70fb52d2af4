"""unit tests (markers by folder: see tests/conftest.py)."""
