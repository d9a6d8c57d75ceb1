"""The ``graphrec`` command line (typer + rich)."""
