"""Tests that run the real application's code against what the program generates."""
