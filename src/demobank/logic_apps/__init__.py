"""Logic Apps: declarative workflow definitions that the bank's developers write (YAML, one workflow per file), and
the tools around them. :mod:`demobank.logic_apps.definition` is the one schema (a pydantic model, published as JSON
Schema in ``include/logic_apps/workflow.schema.json``) and reads a file into it with every problem located by
file, line, column and field."""
