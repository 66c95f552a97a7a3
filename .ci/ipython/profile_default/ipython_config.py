# Plain tracebacks (no ANSI colour codes) when pytest executes the notebooks.
c = get_config()  # noqa: F821
c.InteractiveShell.colors = "nocolor"
