"""AIXSSS: load and validate config, build the stack, export the audit view."""

from components.config import load_stack_config
from components.outputs import export
from components.stack import build

# Validation runs first: bad config stops the program before any resource is declared.
config = load_stack_config()
export(build(config))
