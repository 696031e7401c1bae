"""Scripted mutation testing: plant one known bug at a time and check the fast suite catches it."""
