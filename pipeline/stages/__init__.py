"""One module per verb: the CLI subcommand, the action folder, the workflow job and the artifact
folder share its name."""
