"""The user-facing layer: the command line, its commands, tables, the demo, figures and the toy
evaluation protocols. The library core (``ebreg``) never imports it."""
