"""One module per `flaxnets` sub-command (see `flaxnets.cli`)."""
