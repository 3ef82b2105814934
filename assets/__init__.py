"""trustlake's software-defined assets, one module per stage of the lifecycle."""
