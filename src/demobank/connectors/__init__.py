"""Hooks that wrap the vendors' SDKs. Hooks know no workflow."""
