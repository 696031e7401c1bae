"""Generated server configuration files: pure functions of the stack config, tested with real servers."""
