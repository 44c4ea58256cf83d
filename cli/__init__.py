"""The `fleet` command: a thin front that parses arguments, loads settings and calls the packages."""
