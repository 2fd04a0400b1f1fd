"""``python -m falconet.state.fields > docs/fields.md`` regenerates the field reference."""

from falconet.state.fields import core_field_defs, markdown_table

print(markdown_table(core_field_defs(hostname="host")))
