"""Instruction-tuning data: reading files, salvaging corrupt ones, formatting and tokenising."""
