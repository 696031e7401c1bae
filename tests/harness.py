"""The tests run the program through the same offline engine as `make render`."""

from offline.engine import (  # noqa: F401
    PROJECT,
    ROOT,
    STACKS,
    Deployment,
    Registration,
    is_secret,
    plain_strings,
    reveal,
    run_program,
    stack_config,
)
