"""DVC stages: one thin module per stage. Each parses params, calls the library, writes its outs."""
