"""The program: one row of settings that every other domain reads."""
