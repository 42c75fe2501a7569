"""Adapters of the validator to the outside world (Qwen through dashscope)."""
