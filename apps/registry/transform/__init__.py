"""Metadata in any known format -> canonical metadata, with a confidence per field.

`detect` recognises the input, `mappers` turn known formats into the canonical shape
(pure), `llm` asks a configured provider for the rest, `service` records and applies.
"""
