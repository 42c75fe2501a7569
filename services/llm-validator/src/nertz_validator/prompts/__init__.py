"""Prompt templates of the validator (``<id>.txt``; see :mod:`nertz_validator.core.prompt`)."""
