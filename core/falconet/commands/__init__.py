"""One module per ``falconet`` subcommand. Each has ``HELP`` (one line), ``DESCRIPTION``,
``add_arguments(parser)`` and ``main(args) -> int``. ``falconet.cli`` only wires them up."""

#: (command name, module) in the order ``falconet --help`` lists them
COMMANDS = [
    ("run", "falconet.commands.run"),
    ("record", "falconet.commands.record"),
    ("replay", "falconet.commands.replay"),
    ("rules", "falconet.commands.rules"),
    ("fields", "falconet.commands.fields"),
    ("plugins", "falconet.commands.plugins"),
    ("simulate", "falconet.commands.simulate"),
    ("test", "falconet.commands.test"),
]
