"""Run the stack program without the Pulumi CLI: real values, recorded resources, rendered files."""
